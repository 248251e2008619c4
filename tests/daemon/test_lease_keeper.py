"""The lease keeper against a real PostgreSQL state: fair shares, takeover of a dead
replica's groups, a lost lease (fenced stop), and the limiter fence of a paused process.

Tenants are stand-ins (`FakeTenants` records what the keeper launches and stops); the
leases, the replicas' heartbeats and the clock are PostgreSQL's.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from support.postgres import PostgresCluster

from crmsync.config import Config, HttpConfig, TenantConfig, parse_config
from crmsync.daemon.leases import LeaseKeeper, ReplicaIdentity, advertised_url, group_of
from crmsync.daemon.tenants import TenantSet
from crmsync.net.ratelimit import SlidingWindowLimiter
from crmsync.store import Store, open_store
from crmsync.tenant.resources import Resources, open_resources

ENV = {"QA": "quo-a", "QB": "quo-b", "QC": "quo-c", "QD": "quo-d", "CRM": "crm"}
#: a and b share a Quo key: 5 tenants, 4 lease groups
KEYS = {"a": "QA", "b": "QA", "c": "QB", "d": "QC", "e": "QD"}
LEASE = 3.0


def make_config() -> Config:
    text = f"[daemon]\nlease_seconds = {LEASE}\n"
    for tenant, key in KEYS.items():
        text += (f'[[tenants]]\nid = "{tenant}"\ncrm = "attio"\nquo_api_key = "env:{key}"\n'
                 'crm_api_key = "env:CRM"\n')
    return parse_config(text, "test.toml", ENV)


@dataclass
class FakeRuntime:
    id: str


@dataclass
class FakeTenants:
    """What the keeper asks of `TenantSet`, recorded."""

    running: set[str] = field(default_factory=set)
    stopped: list[tuple[str, bool]] = field(default_factory=list)

    def ids(self) -> set[str]:
        return set(self.running)

    def build(self, _resources: Resources, tenant: TenantConfig) -> FakeRuntime:
        return FakeRuntime(tenant.id)

    def launch(self, runtime: FakeRuntime) -> None:
        self.running.add(runtime.id)

    async def stop_some(self, ids: Iterable[str], _reason: str, _deadline: float, *,
                        fenced: bool = False) -> None:
        for tenant_id in ids:
            self.running.discard(tenant_id)
            self.stopped.append((tenant_id, fenced))


@pytest.fixture
async def url(postgres_cluster: PostgresCluster) -> AsyncIterator[str]:
    url = await postgres_cluster.new_url()
    yield url
    await postgres_cluster.drop(url)


@dataclass
class Replica:
    keeper: LeaseKeeper
    tenants: FakeTenants
    store: Store
    resources: Resources


@pytest.fixture
async def replicas(url: str) -> AsyncIterator[list[Replica]]:
    """Two replicas on one state, each with its own store and resources."""
    config = make_config()
    made = []
    async with open_store(url) as first, open_store(url) as second, \
            open_resources(config) as res1, open_resources(config) as res2:
        for n, (store, resources) in enumerate([(first, res1), (second, res2)]):
            tenants = FakeTenants()
            keeper = LeaseKeeper(
                store, cast(TenantSet, tenants), ReplicaIdentity(f"r{n}", "host", n),
                config=lambda: config, resources=lambda r=resources: r,  # type: ignore[misc]
                shared=True,
            )
            made.append(Replica(keeper, tenants, store, resources))
        yield made
        for replica in made:
            await replica.keeper.close()


async def _until(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def limiter(replica: Replica, key_env: str) -> SlidingWindowLimiter:
    resources = replica.resources
    return resources.limiters.for_account("quo", ENV[key_env], resources.quo_limits).read


async def test_replicas_split_the_groups_and_a_group_s_tenants_stay_together(
    replicas: list[Replica],
) -> None:
    one, two = replicas
    await one.keeper.tick()  # alone so far: takes every group
    assert one.tenants.running == set(KEYS)
    await two.keeper.tick()  # joins: nothing is free yet
    assert two.tenants.running == set()

    async def balanced() -> bool:
        await one.keeper.tick()  # over its share of ceil(4 / 2): releases the excess
        await asyncio.gather(*one.keeper._releases)
        await two.keeper.tick()  # takes what was released, after the release grace
        return len(one.keeper.held) == len(two.keeper.held) == 2

    await _until(balanced, within=10, what="two groups each")
    assert one.tenants.running.isdisjoint(two.tenants.running)
    assert one.tenants.running | two.tenants.running == set(KEYS)
    for replica in replicas:  # a and b share a key: never split between replicas
        assert {"a", "b"} <= replica.tenants.running or not {"a", "b"} & replica.tenants.running
    released = [tid for tid, fenced in one.tenants.stopped if not fenced]
    assert released and not [t for t, fenced in one.tenants.stopped if fenced]


async def test_a_dead_replica_s_groups_are_taken_over_after_the_lease(
    replicas: list[Replica],
) -> None:
    one, two = replicas
    await one.keeper.tick()
    assert len(one.keeper.held) == 4
    started = time.monotonic()  # `one` dies: it never ticks again

    async def taken_over() -> bool:
        await two.keeper.tick()
        return two.tenants.running == set(KEYS)

    await _until(taken_over, within=LEASE + 5, what="the takeover")
    assert time.monotonic() - started >= LEASE - 1.0  # not before the leases ran out
    tokens = {g: h.token for g, h in two.keeper.held.items()}
    assert set(tokens.values()) == {2}  # each a new holder: the fencing token grew


async def test_a_lease_taken_by_another_stops_its_tenants_fenced(
    replicas: list[Replica],
) -> None:
    one, _ = replicas
    await one.keeper.tick()
    group = group_of(next(t for t in make_config().tenants if t.id == "c"))
    leases = one.store.leases
    # Another process took the group over (as after this one was paused past its lease).
    assert await leases.acquire(group, "intruder", ["c"], now=await leases.clock(),
                                seconds=60, steal=True) == 2
    await one.keeper.tick()
    assert ("c", True) in one.tenants.stopped  # fenced: its end is not recorded
    assert "c" not in one.tenants.running
    assert group not in one.keeper.held
    # It does not take the group back while the other holds it.
    assert "c" not in one.tenants.running


async def test_a_paused_replica_s_limiter_sends_nothing_past_its_lease(
    replicas: list[Replica],
) -> None:
    one, _ = replicas
    await one.keeper.tick()
    key = limiter(one, "QB")
    slot = await asyncio.wait_for(key.acquire(), 5)  # held: granted
    slot.done()
    group = group_of(next(t for t in make_config().tenants if t.id == "c"))
    one.keeper.held[group].renewed -= LEASE  # as if the process had slept through it
    waiting = asyncio.ensure_future(key.acquire())
    done, _ = await asyncio.wait({waiting}, timeout=0.5)
    assert not done, "a request was granted on a lease that may have ended"
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_a_tenant_added_to_a_held_group_is_run_and_listed(url: str) -> None:
    """A reload that adds a tenant on a key this replica holds: it starts here, and
    `crmsync status` lists it under the lease (else it would show as stopped)."""
    configs = [make_config()]
    async with open_store(url) as store, open_resources(configs[0]) as resources:
        tenants = FakeTenants()
        keeper = LeaseKeeper(
            store, cast(TenantSet, tenants), ReplicaIdentity("r0", "host", 0),
            config=lambda: configs[-1], resources=lambda: resources, shared=True,
        )
        await keeper.tick()
        configs.append(parse_config(
            f"[daemon]\nlease_seconds = {LEASE}\n" + "".join(
                f'[[tenants]]\nid = "{tenant}"\ncrm = "attio"\nquo_api_key = "env:{key}"\n'
                'crm_api_key = "env:CRM"\n'
                for tenant, key in {**KEYS, "f": "QB"}.items()
            ), "test.toml", ENV,
        ))
        await keeper.tick()
        assert "f" in tenants.running
        held = await store.leases.current(now=await store.leases.clock())
        assert held["f"].group_key == held["c"].group_key
        await keeper.close()


async def test_a_replica_cut_off_from_the_database_stops_before_its_leases_end(
    replicas: list[Replica], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, _ = replicas
    await one.keeper.tick()

    async def unreachable() -> float:
        raise OSError("connection refused")

    monkeypatch.setattr(one.store.leases, "clock", unreachable)
    assert await one.keeper.tick() == []  # within the deadline: keeps running
    assert one.tenants.running == set(KEYS)
    for held in one.keeper.held.values():  # as if the last renewal were a lease ago
        held.renewed -= LEASE
    await one.keeper.tick()
    assert one.tenants.running == set()
    assert sorted(one.tenants.stopped) == sorted((t, True) for t in KEYS)


@pytest.mark.parametrize(
    ("http", "port", "expected"),
    [
        (HttpConfig(host="10.0.0.5"), 8787, "http://10.0.0.5:8787"),
        (HttpConfig(host="::1"), 9000, "http://[::1]:9000"),
        (HttpConfig(host="0.0.0.0"), 8787, f"http://{socket.getfqdn()}:8787"),
        (HttpConfig(advertise_url="https://crmsync-2.internal/"), 8787,
         "https://crmsync-2.internal"),
    ],
)
def test_a_replica_advertises_where_the_others_reach_it(
    http: HttpConfig, port: int, expected: str
) -> None:
    """The bound port (the config's may be 0), the machine's name for a wildcard host
    (no other machine can reach 0.0.0.0), or `http.advertise_url` as given."""
    assert advertised_url(http, port) == expected
