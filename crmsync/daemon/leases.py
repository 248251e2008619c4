"""Which tenants this process runs: leases per Quo-key group (INTERFACE §10).

Every tenant that uses one Quo API key is one group (`group_of`), leased as a whole, so
all of a key's requests leave one process and its limiter stays exact. The keeper
ticks every third of `daemon.lease_seconds`:

    beat      the replica's heartbeat row (the live replicas set the fair share)
    renew     each held lease; one another replica took over is lost: its tenants are
              cancelled at once. While the database cannot be reached nothing is
              renewed, and a lease is given up locally `margin()` before it ends (its
              tenants cancelled), so the next holder never overlaps this one.
    share     ceil(groups ÷ live replicas); below it, free or expired groups are taken
              (their tenants start from their checkpoints); above it, the excess is
              released after its tenants drained: a replica that joins gets work, and
              a release ends the lease `RELEASE_GRACE` later, so the key's last
              requests here and the first ones there never share one limiter window.
    reconcile the running tenants follow the held groups (a reload may move a tenant
              to another group: a new Quo key).

A replica that joins waits one tick before taking anything (`start`), so replicas
started together see each other and split the groups instead of the first taking all.

On SQLite (one process: the state lock says so) the same keeper runs with itself as the
only replica: it takes every group at once, a lease left by a killed daemon included
(`steal`), so `crmsync status` shows the same holder column on either store.

A webhook may arrive at any replica. For a tenant another replica runs, the listener
uses a standby target (`StandbyTargets`): verified and stored in the shared inbox like
any other, then a NOTIFY on `INBOX_CHANNEL` wakes the owner's inbox processor (which
also polls, should a notification be lost). A reload on one replica is announced on
`RELOAD_CHANNEL`, and each of the others re-reads its own config file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final

from crmsync import metrics
from crmsync.config import Config, HttpConfig, TenantConfig
from crmsync.daemon.tenants import TenantSet
from crmsync.errors import UsageError
from crmsync.store import Store
from crmsync.tenant.resources import Resources
from crmsync.tenant.runtime import TenantRuntime
from crmsync.web.targets import WebhookTarget

log = logging.getLogger(__name__)

#: how long after a release the next holder may start (the limiter's window + slack)
RELEASE_GRACE: Final = 1.5
#: NOTIFY channels between replicas; payloads are a tenant id / a replica id
INBOX_CHANNEL: Final = "crmsync_inbox"
RELOAD_CHANNEL: Final = "crmsync_reload"
#: rows of replicas not seen for this long are deleted
FORGET_REPLICAS_AFTER: Final = 7 * 86400.0


def group_of(tenant: TenantConfig) -> str:
    """The lease group of a tenant: its Quo API key's fingerprint (never the key)."""
    digest = hashlib.sha256(tenant.quo_api_key.reveal().encode()).hexdigest()
    return f"quo:{digest[:16]}"


def margin(seconds: float) -> float:
    """How long before its lease ends a replica that cannot renew stops its tenants."""
    return 1.0 + seconds / 5


@dataclass(frozen=True)
class ReplicaIdentity:
    id: str
    host: str
    pid: int
    #: where the other replicas reach this one's listener (set once it is bound)
    api_url: str | None = None

    @classmethod
    def of_this_process(cls) -> ReplicaIdentity:
        host = socket.gethostname()
        pid = os.getpid()
        return cls(id=f"{host}:{pid}", host=host, pid=pid)


def advertised_url(http: HttpConfig, port: int) -> str:
    """`http.advertise_url`, or http://<host>:<port> (the machine's name for a wildcard
    host: another machine cannot reach 0.0.0.0)."""
    if http.advertise_url is not None:
        return http.advertise_url.rstrip("/")
    host = http.host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 (a name for the bind-all address)
        host = socket.getfqdn()
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


@dataclass
class _Held:
    token: int
    tenants: list[str]
    renewed: float  # time.monotonic() when the last renewal that succeeded was sent
    leaving: bool = False


@dataclass
class LeaseKeeper:
    store: Store
    tenants: TenantSet
    replica: ReplicaIdentity
    config: Callable[[], Config]
    resources: Callable[[], Resources]
    #: True for a shared (PostgreSQL) state; False: the only process (SQLite)
    shared: bool
    held: dict[str, _Held] = field(default_factory=dict)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _releases: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def seconds(self) -> float:
        return self.config().daemon.lease_seconds

    def groups(self) -> dict[str, list[TenantConfig]]:
        """The enabled tenants by lease group, per the running config."""
        groups: dict[str, list[TenantConfig]] = {}
        for tenant in self.config().tenants:
            if tenant.enabled:
                groups.setdefault(group_of(tenant), []).append(tenant)
        return groups

    def owns(self, tenant: TenantConfig) -> bool:
        held = self.held.get(group_of(tenant))
        return held is not None and not held.leaving

    # -- the loop -----------------------------------------------------------------------

    async def start(self) -> list[TenantRuntime]:
        """Join (a shared state: beat, then wait a tick to see the others) and take the
        first share; returns the runtimes launched."""
        if self.shared:
            await self.store.leases.beat(
                self.replica.id, host=self.replica.host, pid=self.replica.pid,
                now=await self.store.leases.clock(), api_url=self.replica.api_url,
            )
            await asyncio.sleep(min(self.seconds / 3, 5.0))
        return await self.tick()

    async def run(self) -> None:
        """Tick until cancelled."""
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                await self.tick()
            except Exception:  # a bug: the next tick tries again; the deadlines still hold
                log.exception("lease keeping failed")

    async def tick(self) -> list[TenantRuntime]:
        async with self._lock:
            return await self._tick()

    async def _tick(self) -> list[TenantRuntime]:
        leases = self.store.leases
        seconds = self.seconds
        sent = time.monotonic()
        try:
            now = await leases.clock()
            await leases.beat(self.replica.id, host=self.replica.host, pid=self.replica.pid,
                              now=now, api_url=self.replica.api_url)
            lost = [g for g in list(self.held) if not await self._renew(g, now, sent)]
            live = len(await leases.live_replicas(now=now, within=seconds)) if self.shared else 1
        except Exception as exc:  # the database is unreachable: nothing renewed
            log.warning("cannot renew leases (state database unreachable?): %s", exc)
            await self._give_up_overdue()
            return []
        await self._stop_groups(lost, "lease lost: another replica took it over", "lost")
        await self._give_up_overdue()
        groups = self.groups()
        for group, held in self.held.items():
            members = [t.id for t in groups.get(group, [])]
            if members and members != held.tenants and not held.leaving:
                held.tenants = members  # a reload added, removed or moved a tenant
                await self.store.leases.set_members(group, members)
        kept = [g for g, h in self.held.items() if not h.leaving and g in groups]
        gone = [g for g, h in self.held.items() if not h.leaving and g not in groups]
        for group in gone:  # no longer configured (a reload removed its tenants)
            self._release_later(group, "removed from the config")
        share = math.ceil(len(groups) / max(1, live)) if self.shared else len(groups)
        if len(kept) < share:
            await self._acquire(groups, share - len(kept), now, seconds)
        elif len(kept) > share:
            for group in sorted(kept)[share:]:
                self._release_later(group, f"rebalancing: {live} replicas share the tenants")
        started = await self._reconcile(groups)
        metrics.leases_held.set(len(self.held))
        return started

    async def _renew(self, group: str, now: float, sent: float) -> bool:
        held = self.held[group]
        if await self.store.leases.renew(
            group, self.replica.id, held.token, now=now, seconds=self.seconds
        ):
            held.renewed = sent
            return True
        return False

    async def _acquire(
        self, groups: dict[str, list[TenantConfig]], wanted: int, now: float, seconds: float
    ) -> None:
        # Each replica tries the free groups in its own order, so replicas joining
        # together rarely race for the same one.
        def order(group: str) -> str:
            return hashlib.sha256(f"{self.replica.id} {group}".encode()).hexdigest()

        sent = time.monotonic()
        for group in sorted(groups.keys() - self.held.keys(), key=order):
            if wanted == 0:
                break
            members = [t.id for t in groups[group]]
            token = await self.store.leases.acquire(
                group, self.replica.id, members, now=now, seconds=seconds,
                steal=not self.shared,
            )
            if token is not None:
                self.held[group] = _Held(token=token, tenants=members, renewed=sent)
                if self.shared:
                    self._fence(group, groups[group])
                log.info("lease %s taken (token %d): %s", group, token, ", ".join(members))
                metrics.lease_events.labels("taken").inc()
                wanted -= 1

    def _fence(self, group: str, tenants: list[TenantConfig]) -> None:
        """The key's limiter sends nothing once this lease may have ended here: a
        process paused past its lease (SIGSTOP, a frozen VM) wakes up to a limiter that
        holds every request until the keeper has stopped the tenants."""
        def ours() -> bool:
            held = self.held.get(group)
            return held is not None and time.monotonic() < self._deadline(held)

        resources = self.resources()
        for tenant in tenants:
            resources.limiters.for_account(
                "quo", tenant.quo_api_key.reveal(), resources.quo_limits
            ).read.guard = ours

    def _deadline(self, held: _Held) -> float:
        """Monotonic time after which this process must not act on the lease."""
        return held.renewed + self.seconds - margin(self.seconds)

    async def _reconcile(self, groups: dict[str, list[TenantConfig]]) -> list[TenantRuntime]:
        """Run exactly the tenants of the held groups (those being released drain)."""
        wanted = {
            t.id: t for g, held in self.held.items() if not held.leaving
            for t in groups.get(g, [])
        }
        leaving = {tid for h in self.held.values() if h.leaving for tid in h.tenants}
        running = self.tenants.ids()
        stray = running - wanted.keys() - leaving
        if stray:
            await self.tenants.stop_some(stray, "its Quo key's group is not held here",
                                         self._drain_deadline())
        started = []
        for tenant_id, tenant in wanted.items():
            if tenant_id not in running:
                runtime = self.tenants.build(self.resources(), tenant)
                self.tenants.launch(runtime)
                started.append(runtime)
        return started

    # -- giving leases up ---------------------------------------------------------------

    async def _give_up_overdue(self) -> None:
        """Stop the groups whose lease may end before a renewal could reach the database."""
        if not self.shared:
            return  # nobody else may take them: keep running while the file is busy
        now = time.monotonic()
        overdue = [g for g, h in self.held.items() if now >= self._deadline(h)]
        await self._stop_groups(overdue, "lease about to end unrenewed (state database?)",
                                "expired")

    async def _stop_groups(self, groups: list[str], why: str, event: str) -> None:
        """Cancel at once: another replica may start these tenants any moment now."""
        ids = [tid for g in groups for tid in self.held.pop(g).tenants]
        for group in groups:
            log.error("lease %s given up: %s", group, why)
            metrics.lease_events.labels(event).inc()
        if ids:
            await self.tenants.stop_some(ids, why, asyncio.get_running_loop().time(),
                                         fenced=True)

    def _release_later(self, group: str, why: str) -> None:
        held = self.held[group]
        held.leaving = True
        log.info("releasing lease %s (%s)", group, why)
        task = asyncio.create_task(self._release(group, why), name=f"lease:release:{group}")
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, group: str, why: str) -> None:
        held = self.held[group]
        await self.tenants.stop_some(held.tenants, why, self._drain_deadline())
        async with self._lock:
            if self.held.get(group) is not held:
                return  # lost meanwhile: nothing left to release
            del self.held[group]
            metrics.lease_events.labels("released").inc()
            with contextlib.suppress(Exception):  # unreleased, it simply expires
                await self.store.leases.release(
                    group, self.replica.id, held.token,
                    now=await self.store.leases.clock(), grace=RELEASE_GRACE,
                )

    def _drain_deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.config().daemon.shutdown_timeout

    async def close(self) -> None:
        """After the tenants stopped: release every lease and leave (a clean stop hands
        the tenants over at once rather than after the lease time)."""
        for task in list(self._releases):
            task.cancel()
        await asyncio.gather(*self._releases, return_exceptions=True)
        try:
            now = await self.store.leases.clock()
            for group, held in list(self.held.items()):
                await self.store.leases.release(
                    group, self.replica.id, held.token, now=now, grace=RELEASE_GRACE
                )
            self.held.clear()
            await self.store.leases.leave(self.replica.id)
            await self.store.leases.forget_replicas(before=now - FORGET_REPLICAS_AFTER)
        except Exception as exc:  # they expire on their own
            log.warning("leases not released (they expire on their own): %s", exc)


@contextlib.asynccontextmanager
async def command_lease(
    store: Store, config: Config, tenant: TenantConfig, *, command: str
) -> AsyncIterator[None]:
    """Hold `tenant`'s group lease while a command writes its state (a shared state
    only; on SQLite the state lock already keeps one writer). A replica running the
    tenant refuses the command (`UsageError`, exit 2, naming it); while the command
    runs, replicas leave the tenant alone."""
    if store.backend != "postgresql":
        yield
        return
    leases = store.leases
    group = group_of(tenant)
    members = [t.id for t in config.tenants if t.enabled and group_of(t) == group]
    holder = f"{ReplicaIdentity.of_this_process().id} ({command})"
    seconds = config.daemon.lease_seconds
    token = await leases.acquire(group, holder, members or [tenant.id],
                                 now=await leases.clock(), seconds=seconds)
    if token is None:
        lease = await leases.get(group)
        who = lease.holder if lease is not None and lease.holder else "another replica"
        raise UsageError(
            f"tenant {tenant.id} is run by {who} (the lease of its Quo key's tenants); "
            f"a running replica syncs it itself (POST /api/tenants/{tenant.id}/sync), or "
            "stop the replicas first"
        )

    async def renew() -> None:
        while True:
            await asyncio.sleep(seconds / 3)
            if not await leases.renew(group, holder, token, now=await leases.clock(),
                                      seconds=seconds):
                log.error("lease %s lost while `%s` ran", group, command)
                return

    renewing = asyncio.create_task(renew(), name=f"lease:{group}")
    try:
        yield
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        with contextlib.suppress(Exception):  # unreleased, it expires on its own
            await leases.release(group, holder, token, now=await leases.clock(),
                                 grace=RELEASE_GRACE)


class StandbyTargets:
    """Webhook targets of the tenants another replica runs (a shared state only)."""

    def __init__(
        self, store: Store, config: Callable[[], Config], resources: Callable[[], Resources]
    ) -> None:
        self._store = store
        self._config = config
        self._resources = resources
        self._built: dict[str, tuple[Config, WebhookTarget]] = {}
        self._notices: set[asyncio.Task[None]] = set()

    def __call__(self, tenant_id: str) -> WebhookTarget | None:
        config = self._config()
        cached = self._built.get(tenant_id)
        if cached is not None and cached[0] is config:
            return cached[1]
        tenant = next((t for t in config.tenants if t.id == tenant_id and t.enabled), None)
        if tenant is None:
            return None
        adapter = self._resources().clients_for(tenant).adapter
        target = RemoteTarget.for_tenant(config, tenant, adapter=adapter, store=self._store)
        target.announce = self._announce
        self._built[tenant_id] = (config, target)
        return target

    def _announce(self, tenant_id: str) -> None:
        task = asyncio.create_task(self._notify(tenant_id), name=f"inbox:notify:{tenant_id}")
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _notify(self, tenant_id: str) -> None:
        try:
            await self._store.notify(INBOX_CHANNEL, tenant_id)
        except Exception as exc:  # the owner's inbox poll finds the event anyway
            log.warning("could not notify the owner of %s of a new event: %s", tenant_id, exc)


class RemoteTarget(WebhookTarget):
    """A target whose inbox processor runs on another replica: `notify` tells it there."""

    announce: Callable[[str], None] | None = None

    def notify(self) -> None:
        if self.announce is not None:
            self.announce(self.tenant)
