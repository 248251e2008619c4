"""Leases per Quo-key group and the replicas' heartbeats, on both engines."""

from __future__ import annotations

import asyncio
import time

from crmsync.store import Store

NOW = 1_800_000_000.0
LEASE = 30.0


async def test_a_free_group_is_taken_with_token_1_and_lists_its_tenants(store: Store) -> None:
    token = await store.leases.acquire("quo:k1", "r1", ["acme", "other"], now=NOW, seconds=LEASE)
    assert token == 1
    held = await store.leases.current(now=NOW + 1)
    assert {tid: (h.holder, h.group_key, h.token) for tid, h in held.items()} == {
        "acme": ("r1", "quo:k1", 1),
        "other": ("r1", "quo:k1", 1),
    }
    assert held["acme"].expires_at == NOW + LEASE


async def test_a_current_lease_is_refused_to_another_holder(store: Store) -> None:
    await store.leases.acquire("quo:k1", "r1", ["acme"], now=NOW, seconds=LEASE)
    assert await store.leases.acquire(
        "quo:k1", "r2", ["acme"], now=NOW + LEASE - 0.001, seconds=LEASE
    ) is None
    lease = await store.leases.get("quo:k1")
    assert lease is not None and (lease.holder, lease.token) == ("r1", 1)


async def test_an_expired_lease_is_taken_over_with_a_higher_token(store: Store) -> None:
    await store.leases.acquire("quo:k1", "r1", ["acme"], now=NOW, seconds=LEASE)
    token = await store.leases.acquire("quo:k1", "r2", ["acme"], now=NOW + LEASE, seconds=LEASE)
    assert token == 2
    # The old holder's renewal fails: it must stop (its token is no longer current).
    assert not await store.leases.renew("quo:k1", "r1", 1, now=NOW + LEASE + 1, seconds=LEASE)
    assert not await store.leases.holds("quo:k1", "r1", 1, now=NOW + LEASE + 1)
    assert await store.leases.holds("quo:k1", "r2", 2, now=NOW + LEASE + 1)


async def test_renewal_extends_only_a_current_lease(store: Store) -> None:
    await store.leases.acquire("quo:k1", "r1", ["acme"], now=NOW, seconds=LEASE)
    assert await store.leases.renew("quo:k1", "r1", 1, now=NOW + 10, seconds=LEASE)
    assert await store.leases.acquire("quo:k1", "r2", [], now=NOW + LEASE + 1, seconds=5) is None
    # Expired and not taken yet: a late renewal must not revive it (someone may be
    # taking it over right now on the strength of its expiry).
    assert not await store.leases.renew("quo:k1", "r1", 1, now=NOW + 10 + LEASE, seconds=LEASE)


async def test_a_release_frees_the_group_after_the_grace(store: Store) -> None:
    await store.leases.acquire("quo:k1", "r1", ["acme"], now=NOW, seconds=LEASE)
    assert await store.leases.release("quo:k1", "r1", 1, now=NOW + 5, grace=1.5)
    assert await store.leases.current(now=NOW + 5) == {}
    assert await store.leases.acquire("quo:k1", "r2", ["acme"], now=NOW + 6, seconds=LEASE) is None
    assert await store.leases.acquire("quo:k1", "r2", ["acme"], now=NOW + 6.5, seconds=LEASE) == 2
    # A release by a holder that lost the lease changes nothing.
    assert not await store.leases.release("quo:k1", "r1", 1, now=NOW + 7, grace=1.5)


async def test_steal_takes_a_current_lease(store: Store) -> None:
    """For SQLite's one daemon: a lease left by a killed daemon of the same file."""
    await store.leases.acquire("quo:k1", "old", ["acme"], now=NOW, seconds=LEASE)
    token = await store.leases.acquire(
        "quo:k1", "new", ["acme"], now=NOW + 1, seconds=LEASE, steal=True
    )
    assert token == 2


async def test_a_tenant_moved_to_another_group_is_listed_there_only(store: Store) -> None:
    await store.leases.acquire("quo:k1", "r1", ["acme", "other"], now=NOW, seconds=LEASE)
    await store.leases.acquire("quo:k2", "r2", ["other"], now=NOW, seconds=LEASE)
    held = await store.leases.current(now=NOW)
    assert {tid: h.group_key for tid, h in held.items()} == {"acme": "quo:k1", "other": "quo:k2"}


async def test_replicas_racing_for_a_group_one_wins(store: Store) -> None:
    results = await asyncio.gather(*(
        store.leases.acquire("quo:k1", f"r{i}", ["acme"], now=NOW, seconds=LEASE)
        for i in range(8)
    ))
    assert [t for t in results if t is not None] == [1]
    assert results.count(None) == 7


async def test_replicas_live_while_they_beat(store: Store) -> None:
    await store.leases.beat("a:1", host="a", pid=1, now=NOW)
    await store.leases.beat("b:2", host="b", pid=2, now=NOW)
    await store.leases.beat("a:1", host="a", pid=1, now=NOW + 20)
    live = await store.leases.live_replicas(now=NOW + 25, within=LEASE)
    assert [(r.replica_id, r.started_at, r.seen_at) for r in live] == [
        ("a:1", NOW, NOW + 20), ("b:2", NOW, NOW),
    ]
    assert [r.replica_id for r in await store.leases.live_replicas(now=NOW + 31, within=LEASE)] \
        == ["a:1"]
    await store.leases.leave("a:1")
    assert await store.leases.forget_replicas(before=NOW + 1) == 1
    assert await store.leases.live_replicas(now=NOW, within=LEASE * 10) == []


async def test_a_replica_says_where_its_listener_is(store: Store) -> None:
    """The address is kept with the heartbeat (the management API forwards there) and
    follows a replica that moved it (a restart under the same id is a new process)."""
    await store.leases.beat("a:1", host="a", pid=1, now=NOW)
    assert (await store.leases.replica("a:1")) is not None
    assert (await store.leases.replica("a:1")).api_url is None  # type: ignore[union-attr]
    await store.leases.beat("a:1", host="a", pid=1, now=NOW + 1, api_url="http://a:8787")
    found = await store.leases.replica("a:1")
    assert found is not None and found.api_url == "http://a:8787" and found.started_at == NOW
    assert await store.leases.replica("b:2") is None


async def test_the_clock_is_the_wall_clock_of_the_database(store: Store) -> None:
    now = await store.leases.clock()
    if store.backend == "postgresql":
        assert abs(now - time.time()) < 5  # the server's clock, on this machine
    else:
        assert now == store.now()  # the store's (fake) clock


async def test_members_follow_a_reload(store: Store) -> None:
    await store.leases.acquire("quo:k1", "r1", ["acme"], now=NOW, seconds=LEASE)
    await store.leases.set_members("quo:k1", ["acme", "other"])
    assert set(await store.leases.current(now=NOW)) == {"acme", "other"}
    await store.leases.set_members("quo:k1", ["other"])
    assert set(await store.leases.current(now=NOW)) == {"other"}
