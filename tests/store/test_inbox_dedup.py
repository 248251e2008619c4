"""`webhook_inbox` de-duplication for Quo's two webhook systems (migration v4).

On both engines with a fake clock (the durability tests watch SQLite's statements). A
Quo delivery may repeat three ways: the same delivery again (same `webhook-id`, Quo's
retry), the same event through another webhook (same event id, another `webhook-id`),
the same occurrence through the legacy and the new system (another event id, the same
business key). Each is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from contextlib import closing
from pathlib import Path

import asyncpg
import pytest
from support.clock import FakeClock
from support.postgres import sqlite_only

from crmsync.store import Store, open_store
from crmsync.store import migrations as migrations_module
from crmsync.store.inbox import DELIVERY_ID_RETENTION_SECONDS

T = "acme"
HOUR = 3600.0
KEY = '["message.received","AC1","2026-04-13T12:00:00.000Z"]'


async def insert(
    store: Store, event_id: str, *, delivery: str | None = None, key: str | None = None,
    tenant: str = T,
) -> int | None:
    return await store.inbox.insert(
        tenant, "quo", event_id, "message.received", b"{}", {},
        delivery_id=delivery, business_key=key,
    )


async def settle_and_prune(store: Store, clock: FakeClock, *ids: int | None) -> None:
    for row in ids:
        assert row is not None
        await store.inbox.mark_processed(T, row)
    assert await store.inbox.prune(T, clock.now + 1) >= len(ids)


async def test_a_redelivered_webhook_id_is_a_duplicate_even_after_its_row_was_pruned(
    store: Store, clock: FakeClock
) -> None:
    """1. delivery msg_1 (event EV1) is stored, processed, and pruned by a retention
    shorter than Quo's retry schedule  2. Quo retries msg_1 (its 2xx was lost) 10 h
    later  3. 28 h after the first delivery it is retried once more
    Result: the retry at 10 h is a duplicate (None, nothing stored); once the delivery
    id is older than 28 h a prune forgets it, and then it is new again."""
    first = await insert(store, "EV1", delivery="msg_1", key=KEY)
    assert first is not None
    row = await store.inbox.get(T, first)
    assert row is not None and (row.delivery_id, row.business_key) == ("msg_1", KEY)
    await settle_and_prune(store, clock, first)
    assert await store.inbox.list(T) == []

    clock.now += 10 * HOUR
    assert await insert(store, "EV1", delivery="msg_1", key=KEY) is None
    assert await store.inbox.list(T) == []
    assert await store.inbox.has_delivery(T, "quo", "msg_1")

    clock.now += DELIVERY_ID_RETENTION_SECONDS - 10 * HOUR + 1
    assert await store.inbox.prune(T, clock.now - 30 * 86400.0) == 1  # only the id
    assert not await store.inbox.has_delivery(T, "quo", "msg_1")
    assert await insert(store, "EV1", delivery="msg_1", key=KEY) is not None


async def test_delivery_ids_are_kept_28_hours_whatever_the_retention(
    store: Store, clock: FakeClock
) -> None:
    """A prune 27 h 59 min after a delivery keeps its id; one at 28 h 1 s drops it."""
    assert await insert(store, "EV1", delivery="msg_1") is not None
    clock.now += 28 * HOUR - 60
    await store.inbox.prune(T, clock.now)
    assert await store.inbox.has_delivery(T, "quo", "msg_1")
    clock.now += 61
    await store.inbox.prune(T, clock.now)
    assert not await store.inbox.has_delivery(T, "quo", "msg_1")


async def test_the_same_event_through_two_webhooks_is_stored_once(store: Store) -> None:
    """1. event EV1 arrives as delivery msg_a (webhook A) and msg_b (webhook B)
    Result: one row; both delivery ids are remembered (so a retry of either, after
    the row is pruned, is still a duplicate)."""
    assert await insert(store, "EV1", delivery="msg_a", key=KEY) is not None
    assert await insert(store, "EV1", delivery="msg_b", key=KEY) is None
    assert len(await store.inbox.list(T)) == 1
    assert await store.inbox.has_delivery(T, "quo", "msg_a")
    assert await store.inbox.has_delivery(T, "quo", "msg_b")


async def test_the_same_occurrence_through_both_systems_is_stored_once(store: Store) -> None:
    """The legacy event (its own EV id, no delivery id) and the new one (another EV id,
    a delivery id) share the business key: whichever comes first is stored."""
    legacy = await insert(store, "EV-legacy", key=KEY)
    assert legacy is not None
    assert await insert(store, "EV-new", delivery="msg_1", key=KEY) is None
    assert await insert(store, "EV-legacy", key=KEY) is None  # legacy retry
    assert [(e.event_id, e.delivery_id) for e in await store.inbox.list(T)] == [
        ("EV-legacy", None)
    ]


async def test_rows_without_a_business_key_never_collide(store: Store) -> None:
    assert await insert(store, "EV1") is not None
    assert await insert(store, "EV2") is not None
    assert await insert(store, "EV3", delivery="msg_3") is not None
    assert len(await store.inbox.list(T)) == 3


async def test_keys_are_per_tenant_and_per_source(store: Store) -> None:
    assert await insert(store, "EV1", delivery="msg_1", key=KEY) is not None
    assert await insert(store, "EV1", delivery="msg_1", key=KEY, tenant="other") is not None
    crm = await store.inbox.insert(
        T, "crm", "EV1", "record.updated", b"{}", {}, delivery_id="msg_1", business_key=KEY
    )
    assert crm is not None
    assert not await store.inbox.has_delivery(T, "crm", "msg_unknown")


@sqlite_only
async def test_a_delivery_insert_is_one_durable_transaction(store: Store) -> None:
    """The delivery id and the inbox row commit together, with `synchronous = FULL`,
    and the connection is back at NORMAL afterwards; a duplicate delivery inserts no
    row (and commits nothing new)."""
    traced: list[str] = []
    conn = store._db._conn
    await conn.set_trace_callback(traced.append)
    assert await insert(store, "EV1", delivery="msg_1", key=KEY) is not None
    assert await insert(store, "EV1", delivery="msg_1", key=KEY) is None
    await conn.set_trace_callback(None)
    # Each statement by its first words: "INSERT INTO webhook_inbox", "PRAGMA ... FULL".
    statements = [" ".join(s.split()[: 4 if s.startswith("PRAGMA") else 3]) for s in traced]
    once = [
        "PRAGMA synchronous = FULL", "BEGIN IMMEDIATE", "INSERT INTO webhook_deliveries",
        "INSERT INTO webhook_inbox", "COMMIT", "PRAGMA synchronous = NORMAL",
    ]
    duplicate = [once[0], once[1], once[2], "COMMIT", once[-1]]
    assert statements == once + duplicate
    assert (await store._db.fetchone("PRAGMA synchronous"))[0] == 1  # type: ignore[index]


async def test_a_failed_inbox_insert_rolls_the_delivery_id_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The inbox row fails to insert (a full disk): the delivery id is not remembered,
    so Quo's retry of it is stored then."""
    import crmsync.store.inbox as inbox_module

    monkeypatch.setattr(inbox_module, "_INSERT", "INSERT INTO no_such_table VALUES (1)")
    with pytest.raises((sqlite3.OperationalError, asyncpg.UndefinedTableError)):
        await insert(store, "EV1", delivery="msg_1")
    monkeypatch.undo()
    assert not await store.inbox.has_delivery(T, "quo", "msg_1")
    assert await insert(store, "EV1", delivery="msg_1") is not None


async def test_v4_upgrades_a_v3_file_keeping_its_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. a version-3 file (0.6) holds a legacy Quo event
    2. this crmsync opens it
    Result: the event is kept, with no delivery id or business key; the new keys work."""
    path = tmp_path / "crmsync.db"
    with monkeypatch.context() as old:
        old.setattr(migrations_module, "MIGRATIONS", migrations_module.MIGRATIONS[:3])
        old.setattr(migrations_module, "LATEST_VERSION", 3)
        async with open_store(path) as store:
            await store.tenants.upsert(T, "attio")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "INSERT INTO webhook_inbox (tenant_id, source, event_id, event_type, body, headers,"
            " received_at, next_attempt_at, queued_at)"
            " VALUES (?, 'quo', 'EV-old', 't', x'7b7d', '{}', 1, 1, 1)", (T,),
        )
        conn.commit()
    async with open_store(path) as store:
        assert 4 in store.applied_migrations
        (event,) = await store.inbox.list(T)
        assert (event.event_id, event.delivery_id, event.business_key) == ("EV-old", None, None)
        assert await insert(store, "EV-new", delivery="msg_1", key=KEY) is not None
        assert await insert(store, "EV-newer", key=KEY) is None
    with closing(sqlite3.connect(path)) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"webhook_deliveries", "webhook_inbox_business_key"} <= tables


@sqlite_only
async def test_a_cancelled_delivery_insert_restores_normal(store: Store) -> None:
    """A delivery insert cancelled once its `PRAGMA synchronous = FULL` ran (a shutdown
    while a webhook is stored) leaves the connection at NORMAL, outside any transaction,
    and the delivery either fully stored or not at all."""
    loop = asyncio.get_running_loop()
    full_sent = asyncio.Event()

    def trace(statement: str) -> None:  # runs on the connection's thread
        if statement == "PRAGMA synchronous = FULL":
            loop.call_soon_threadsafe(full_sent.set)

    await store._db._conn.set_trace_callback(trace)
    task = asyncio.ensure_future(insert(store, "EV1", delivery="msg_1", key=KEY))
    await full_sent.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await store._db._conn.set_trace_callback(None)
    assert (await store._db.fetchone("PRAGMA synchronous"))[0] == 1  # type: ignore[index]
    assert not store._db.in_transaction()
    stored = len(await store.inbox.list(T))
    assert stored == int(await store.inbox.has_delivery(T, "quo", "msg_1"))
    assert await insert(store, "EV2", delivery="msg_2") is not None


@pytest.mark.parametrize("ticks", range(8))
async def test_a_delivery_insert_cancelled_at_any_point_is_all_or_nothing(
    store: Store, ticks: int
) -> None:
    """1. a delivery insert (delivery id + inbox row, one durable transaction) starts
    2. it is cancelled after `ticks` loop iterations (BEGIN, an INSERT or the COMMIT in
    flight)  Result: no transaction is left open, the delivery is stored whole or not at
    all, and the next insert works."""
    task = asyncio.ensure_future(insert(store, "EV1", delivery="msg_1", key=KEY))
    for _ in range(ticks):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert not store.in_transaction()
    stored = len(await store.inbox.list(T))
    assert stored == int(await store.inbox.has_delivery(T, "quo", "msg_1"))
    assert await insert(store, "EV2", delivery="msg_2") is not None
