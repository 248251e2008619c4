"""`crmsync run`: the daemon, the root supervisor of every tenant.

    start   resources in one AsyncExitStack (state store, which holds the state lock:
            a second writer of the same state is refused; HTTP session; HTTP listener:
            the port is bound before any tenant starts, so webhooks registered during
            setup can be delivered at once) → one supervised task per enabled tenant
            (`tenants.py`) → READY=1 once every tenant's startup attempt is over
            (readiness handshake: `TenantRuntime.settled`)
    run     signal handlers only set requests (`signals.py`); `_control` acts on them:
            HUP → reload (`reload.py`), USR1 → log every task's stack. The monitor task
            ticks: STATUS= when the summary changes, stall checks (`stall.py`), and the
            heartbeat the systemd watchdog pings on (`systemd.py`). The lag probe
            (`lag.py`) times the loop itself.
    stop    TERM/INT → STOPPING=1; intake answers 503 (senders retry later) → drain: no
            new page is fetched, fetched pages run to their committed checkpoint, up to
            `daemon.shutdown_timeout` → tenants cancelled with a reason → resources
            closed in reverse → exit 0. A second INT skips the drain: exit 130.

A tenant that crashes is its own supervisor's business (restart budget, parked, failed);
only a failure of this root (a bug, the state store failing) ends the process non-zero,
for systemd to restart it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable
from dataclasses import replace

from aiohttp import web
from aiohttp.typedefs import Handler

from crmsync.config import Config
from crmsync.daemon.collector import tune_collector
from crmsync.daemon.lag import probe_lag
from crmsync.daemon.leases import (
    INBOX_CHANNEL,
    RELOAD_CHANNEL,
    LeaseKeeper,
    ReplicaIdentity,
    StandbyTargets,
    advertised_url,
)
from crmsync.daemon.logs import configure_logging
from crmsync.daemon.reload import plan_reload, read_config
from crmsync.daemon.signals import SignalRequests, task_stacks
from crmsync.daemon.systemd import Notifier, keep_watchdog, monotonic_usec, watchdog_period
from crmsync.daemon.tenants import TenantSet, count_tenants
from crmsync.errors import EXIT_INTERRUPTED, EXIT_OK, ConfigError
from crmsync.store import DAEMON_COMMAND, Store, open_store
from crmsync.tenant.resources import Resources, open_resources
from crmsync.tenant.runtime import TenantRuntime
from crmsync.tenant.stall import STALL_CHECK_SECONDS
from crmsync.web.app import build_app, serve
from crmsync.web.health import Health

log = logging.getLogger(__name__)

#: how often the monitor ticks (STATUS, heartbeat); faster when the watchdog needs it
MONITOR_TICK_SECONDS = 1.0
#: the pause before listening again to the other replicas after the connection broke
LISTEN_CHECK_SECONDS = 5.0

class Daemon:
    """One `crmsync run`: `await Daemon(config, ...).run()` returns the exit code."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | os.PathLike[str] | None,
        notifier: Notifier,
        watchdog: float | None,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._notifier = notifier
        self._watchdog = watchdog
        self._tick = MONITOR_TICK_SECONDS if watchdog is None else min(
            MONITOR_TICK_SECONDS, watchdog / 2
        )
        self.health = Health()
        self.requests = SignalRequests()
        self._tenants: TenantSet | None = None
        self._ready = False
        self._stopping = False
        self._status = ""
        self._beat = time.monotonic()
        self._resources: Resources | None = None
        self._store: Store | None = None
        self._keeper: LeaseKeeper | None = None
        self._keeping: asyncio.Task[None] | None = None
        self.replica = ReplicaIdentity.of_this_process()
        self._remote_reload = False  # the reload under way was announced by another replica
        self.launched = asyncio.Event()  # set once the configured tenants are launched

    # -- the lifecycle --------------------------------------------------------------

    async def run(self) -> int:
        configure_logging(self.config.daemon)
        self.requests.install(asyncio.get_running_loop())
        try:
            async with contextlib.AsyncExitStack() as stack:
                stack.callback(self._notifier.close)
                # The state first: opening it takes the state lock (one writer per state
                # file), so a second daemon, or one started beside `crmsync sync`, stops
                # here with one line naming the holder, before it binds or calls anything.
                self._store = await stack.enter_async_context(
                    open_store(self.config.daemon.state_location, command=DAEMON_COMMAND)
                )
                self._resources = await stack.enter_async_context(open_resources(self.config))
                tenants = self._tenants = TenantSet(
                    store=self._store, health=self.health, force=self.requests.force
                )
                shared = self._store.backend == "postgresql"
                self._keeper = LeaseKeeper(
                    self._store, tenants, self.replica, config=lambda: self.config,
                    resources=self._current_resources, shared=shared,
                )
                if shared:
                    log.info("replica %s: tenants are leased per Quo key (lease %gs)",
                             self.replica.id, self.config.daemon.lease_seconds)
                    tenants.standby = StandbyTargets(
                        self._store, lambda: self.config, self._current_resources
                    )
                app = build_app(
                    targets=tenants.target, store=self._store, config=lambda: self.config,
                    managed=tenants.runtime,
                    health=self.health, max_body_bytes=self.config.http.max_body_bytes,
                )
                app.middlewares.append(self._intake_gate)
                http = self.config.http
                port = await stack.enter_async_context(serve(app, http.host, http.port))
                log.info("listening on http://%s:%d", http.host, port)
                # The other replicas forward management API requests for our tenants here.
                self.replica = replace(self.replica, api_url=advertised_url(http, port))
                self._keeper.replica = self.replica
                code = await self._supervise(tenants)
            log.info("stopped")
            return code
        finally:
            self.requests.remove()

    def _current_resources(self) -> Resources:
        assert self._resources is not None
        return self._resources

    async def _supervise(self, tenants: TenantSet) -> int:
        assert self._keeper is not None and self._store is not None
        async with asyncio.TaskGroup() as group:
            tenants.bind(group)
            # The tenants whose leases this process gets (all of them on SQLite). Not
            # ready until they are launched (each then has its own reason until it runs).
            self.health.set_reason("daemon", "starting: taking the tenants' leases")
            await self._keeper.start()
            self.health.set_reason("daemon", None)
            self.launched.set()
            # What startup built lives as long as the process: no collection walks it.
            tune_collector()
            helpers = [
                group.create_task(self._monitor(), name="daemon:monitor"),
                group.create_task(self._announce_ready(), name="daemon:ready"),
                group.create_task(probe_lag(), name="daemon:lag"),
            ]
            self._keeping = group.create_task(self._keeper.run(), name="daemon:leases")
            helpers.append(self._keeping)
            if self._keeper.shared:
                helpers.append(group.create_task(self._listen(), name="daemon:listen"))
            if self._watchdog is not None:
                log.info("systemd watchdog: WATCHDOG=1 every %.2fs", self._watchdog)
                helpers.append(group.create_task(
                    keep_watchdog(self._notifier, self._watchdog, last_beat=lambda: self._beat),
                    name="daemon:watchdog",
                ))
            code = await self._control()
            for helper in helpers:
                helper.cancel()
        return code

    async def _control(self) -> int:
        """The one coroutine that acts on signals."""
        requests = self.requests
        while True:
            requests.wake.clear()
            if requests.stop.is_set():
                return await self._shutdown()
            if requests.dump.is_set():
                requests.dump.clear()
                log.warning("SIGUSR1: %s", task_stacks())
                continue
            if requests.reload.is_set() and self._ready:  # before READY=1 it waits
                requests.reload.clear()
                await self._reload()
                continue
            await requests.wake.wait()

    async def _announce_ready(self) -> None:
        """READY=1 once every tenant's startup attempt is over (the port is bound)."""
        assert self._tenants is not None
        for runtime in self._tenants.runtimes():
            await runtime.settled.wait()
        self._ready = True
        self._status = self._summary()
        self._notifier.send("READY=1", f"STATUS={self._status}")
        log.info("ready: %s", self._status)
        self.requests.wake.set()  # a reload asked for during startup may go now

    async def _monitor(self) -> None:
        """STATUS= on change, stall checks, and the supervisor heartbeat."""
        loop = asyncio.get_running_loop()
        assert self._tenants is not None
        tenants = self._tenants
        next_stall_check = loop.time()  # at once: the store-backed gauges exist from the start
        while True:
            self._push_status()
            if loop.time() >= next_stall_check:
                next_stall_check = loop.time() + STALL_CHECK_SECONDS
                try:
                    await tenants.check()
                except Exception:  # e.g. the store is busy: no beat this tick
                    log.exception("stall check or gauge refresh failed")
                    await asyncio.sleep(self._tick)
                    continue
            self._beat = time.monotonic()
            await asyncio.sleep(self._tick)

    async def _listen(self) -> None:
        """NOTIFYs from the other replicas: a webhook one of them stored for a tenant
        running here, a reload on one of them. Listens again after a lost connection."""
        assert self._store is not None
        callbacks = {INBOX_CHANNEL: self._inbox_notice, RELOAD_CHANNEL: self._reload_notice}
        while True:
            try:
                listening = self._store.listening(callbacks)
                assert listening is not None
                async with listening as lost:
                    await lost.wait()
                log.warning("lost the connection listening to the other replicas")
            except Exception as exc:  # the inbox processors poll meanwhile
                log.warning("cannot listen to the other replicas: %s", exc)
            await asyncio.sleep(LISTEN_CHECK_SECONDS)

    def _inbox_notice(self, tenant_id: str) -> None:
        runtime = self.runtime(tenant_id)
        if runtime is not None:
            runtime.target.notify()

    def _reload_notice(self, replica_id: str) -> None:
        if replica_id != self.replica.id:
            log.info("replica %s reloaded: reloading too", replica_id)
            self._remote_reload = True
            self.requests.reload.set()
            self.requests.wake.set()

    def runtime(self, tenant_id: str) -> TenantRuntime | None:
        return None if self._tenants is None else self._tenants.runtime(tenant_id)

    def stop(self) -> None:
        """What SIGTERM does, for a caller in the same process (`crmsync demo`)."""
        self.requests.received(signal.SIGTERM)

    def _stop_deadline(self) -> float:
        return asyncio.get_running_loop().time() + self.config.daemon.shutdown_timeout

    # -- reload -----------------------------------------------------------------------

    async def _reload(self) -> None:
        self._notifier.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}")
        log.info("SIGHUP: reloading the config")
        try:
            new = await read_config(self._config_path)
        except ConfigError as exc:
            for line in exc.lines():
                log.error("reload rejected, keeping the running config: %s", line)  # noqa: TRY400
            self._notify_ready()
            return
        except Exception:  # a bug must not take the running tenants down with it
            log.exception("reload failed, keeping the running config")
            self._notify_ready()
            return
        plan = plan_reload(self.config, new)
        for key in plan.needs_restart:
            log.warning("%s changed: needs a restart, not applied", key)
        old = self.config
        self.config = plan.effective
        if (old.daemon.log_level, old.daemon.log_format) != (
            new.daemon.log_level, new.daemon.log_format
        ):
            configure_logging(self.config.daemon)
        assert self._resources is not None and self._tenants is not None
        if plan.shared:
            log.info("%s changed: restarting every tenant", ", ".join(plan.shared))
            self._resources = Resources(self.config, self._resources.session)
        assert self._keeper is not None and self._store is not None
        started = await self._tenants.apply(
            plan, self._resources, self._stop_deadline(), owned=self._keeper.owns
        )
        started += await self._keeper.tick()  # groups added, moved or gone
        log.info("reloaded: %s", plan.summary())
        if self._keeper.shared and not self._remote_reload:
            try:
                await self._store.notify(RELOAD_CHANNEL, self.replica.id)
            except Exception as exc:  # the others keep their config until their own HUP
                log.warning("could not tell the other replicas to reload: %s", exc)
        self._remote_reload = False
        # READY=1 once the new tenants' startup attempts are over (or on a stop request).
        await _first_of(
            asyncio.gather(*(runtime.settled.wait() for runtime in started)),
            self.requests.stop.wait(),
        )
        self._notify_ready()

    def _notify_ready(self) -> None:
        self._status = self._summary()
        self._notifier.send("READY=1", f"STATUS={self._status}")

    # -- shutdown ---------------------------------------------------------------------

    @web.middleware
    async def _intake_gate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """While stopping, webhooks get 503 (the sender retries) instead of a half-stop."""
        if self._stopping and request.path.startswith("/webhooks/"):
            return web.json_response(
                {"error": "shutting down, retry later"}, status=503,
                headers={"Retry-After": "30"},
            )
        return await handler(request)

    async def _shutdown(self) -> int:
        timeout = self.config.daemon.shutdown_timeout
        self._stopping = True
        self.health.set_reason("daemon", "shutting down")
        assert self._tenants is not None
        count = count_tenants(len(self._tenants))
        self._status = f"stopping: draining {count}"
        self._notifier.send("STOPPING=1", f"STATUS={self._status}")
        log.info("%s: stopping; draining %s for up to %gs",
                 self.requests.stop_signal, count, timeout)
        if self._keeping is not None:
            self._keeping.cancel()  # no lease is taken or tenant started while draining
        await self._tenants.stop_all("shutdown", self._stop_deadline())
        assert self._keeper is not None
        await self._keeper.close()
        if self.requests.force.is_set():
            log.warning("second SIGINT: forced exit")
            return EXIT_INTERRUPTED
        return EXIT_OK

    # -- status -----------------------------------------------------------------------

    def _summary(self) -> str:
        """One line for STATUS=, e.g. `3 tenants: 2 running, 1 parked`."""
        return "no tenants enabled" if self._tenants is None else self._tenants.summary()

    def _push_status(self) -> None:
        if not self._ready or self._stopping:
            return  # READY=1 and STOPPING=1 carry their own STATUS=
        summary = self._summary()
        if summary != self._status:
            self._status = summary
            self._notifier.send(f"STATUS={summary}")


async def _first_of(*waits: Awaitable[object]) -> None:
    """Until the first of `waits` is done; the others are cancelled."""
    futures: list[asyncio.Future[object]] = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            future.cancel()


async def run_daemon(config: Config, config_path: str | os.PathLike[str] | None = None) -> int:
    """Run until stopped; SIGHUP re-reads `config_path` (None: the default lookup)."""
    daemon = Daemon(
        config, config_path=config_path, notifier=Notifier.from_env(),
        watchdog=watchdog_period(),
    )
    return await daemon.run()
