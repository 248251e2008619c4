"""`webhook_inbox`: durable inserts, selection by next-attempt time, re-queueing, pruning.

On both engines (SQLite in tmp_path, PostgreSQL on the session's cluster) with a fake
clock, so every time stamped on a row is known; the durability tests watch SQLite's own
statements (PostgreSQL's durable commit: `test_postgres.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from contextlib import closing
from pathlib import Path

from support.clock import FakeClock
from support.postgres import sqlite_only

from crmsync.store import Store, open_store

T = "acme"
DAY = 86400.0


async def _insert(store: Store, event_id: str, tenant: str = T) -> int:
    row = await store.inbox.insert(tenant, "quo", event_id, "message.received", b"{}", {})
    assert row is not None
    return row


# -- durability -------------------------------------------------------------------------


@sqlite_only
async def test_the_insert_before_the_ack_commits_with_synchronous_full(store: Store) -> None:
    """1. the statements the store's one connection runs are traced
    2. five inbox inserts run concurrently with other writes (checkpoints, an inbox
       state change) from other tasks
    Result: each inbox INSERT runs right after `PRAGMA synchronous = FULL` and is
    followed at once by `PRAGMA synchronous = NORMAL` (so its autocommit fsyncs the
    WAL before the webhook is acknowledged), no other statement runs in that window,
    and the connection is back at NORMAL (1) afterwards. (Regression test: the insert
    committed at NORMAL, which a power loss can undo after the 2xx.)"""
    traced: list[str] = []
    conn = store._db._conn  # the one writer connection: tracing is per connection
    await conn.set_trace_callback(traced.append)
    first = await _insert(store, "EV-first")
    await asyncio.gather(
        *(_insert(store, f"EV{n}") for n in range(5)),
        *(store.checkpoints.set(T, "people", f"cursor-{n}", "x") for n in range(5)),
        store.inbox.mark_processing(T, first),
    )
    await conn.set_trace_callback(None)

    statements = [" ".join(s.split()) for s in traced]
    inserts = [i for i, s in enumerate(statements) if s.startswith("INSERT INTO webhook_inbox")]
    assert len(inserts) == 6
    for i in inserts:
        assert statements[i - 1] == "PRAGMA synchronous = FULL", statements[i - 1 : i + 2]
        assert statements[i + 1] == "PRAGMA synchronous = NORMAL", statements[i - 1 : i + 2]
    full = [i for i, s in enumerate(statements) if s == "PRAGMA synchronous = FULL"]
    assert [i + 1 for i in full] == inserts  # FULL never covers another statement
    assert (await store._db.fetchone("PRAGMA synchronous"))[0] == 1  # type: ignore[index]


@sqlite_only
async def test_a_cancelled_durable_insert_restores_normal(store: Store) -> None:
    """An insert cancelled once its `PRAGMA synchronous = FULL` ran (a shutdown while
    a webhook is being stored) leaves the connection at NORMAL for everything after."""
    loop = asyncio.get_running_loop()
    full_sent = asyncio.Event()

    def trace(statement: str) -> None:  # runs on the connection's thread
        if statement == "PRAGMA synchronous = FULL":
            loop.call_soon_threadsafe(full_sent.set)

    await store._db._conn.set_trace_callback(trace)
    task = asyncio.ensure_future(_insert(store, "EV-cancelled"))
    await full_sent.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task  # it may have finished before the cancel landed: either is fine
    await store._db._conn.set_trace_callback(None)
    assert (await store._db.fetchone("PRAGMA synchronous"))[0] == 1  # type: ignore[index]
    assert await store.inbox.insert(T, "quo", "EV-after", "t", b"", {}) is not None


# -- selection by next-attempt time ------------------------------------------------------


async def test_pending_events_are_selected_by_next_attempt_time(
    store: Store, clock: FakeClock
) -> None:
    """1. events a, b, c arrive; a fails and is retried in 60 s
    2. later, d arrives
    Result: until a's time comes, only b, c, d are due (a does not block them);
    `next_attempt_time` names a's time; once it has come, a is due too, after the
    events that were due before it."""
    a, b, c = [await _insert(store, f"EV-{n}") for n in "abc"]
    assert [e.id for e in await store.inbox.next_pending(T, 10)] == [a, b, c]
    event = await store.inbox.get(T, a)
    assert event is not None
    assert (event.next_attempt_at, event.queued_at) == (clock.now, clock.now)
    assert await store.inbox.claim(T, a)
    assert await store.inbox.retry_later(T, a, "CRM 503", next_attempt_at=clock.now + 60)
    clock.now += 1
    d = await _insert(store, "EV-d")

    assert [e.id for e in await store.inbox.next_pending(T, 10)] == [b, c, d]
    assert [e.id for e in await store.inbox.next_pending(T, 1)] == [b]
    assert await store.inbox.next_attempt_time(T) == clock.now - 1  # b's, due already
    for row in (b, c, d):
        assert await store.inbox.claim(T, row)
        assert await store.inbox.mark_processed(T, row)
    assert await store.inbox.next_pending(T, 10) == []
    assert await store.inbox.next_attempt_time(T) == clock.now - 1 + 60  # a's
    assert await store.inbox.next_attempt_time("other") is None

    clock.now += 59
    (due,) = await store.inbox.next_pending(T, 10)
    assert (due.id, due.state, due.attempts, due.last_error) == (a, "pending", 1, "CRM 503")


async def test_requeue_failed_gives_the_event_a_fresh_budget(
    store: Store, clock: FakeClock
) -> None:
    """1. an event failed (3 attempts) and was marked failed; another tenant has a
       failed event with the same provider id
    2. a day later, `requeue_failed` for that provider event id
    Result: the event is pending, due now, attempts 0, its retry window starting now;
    a processed event and the other tenant's event are untouched."""
    row = await _insert(store, "EV-1")
    theirs = await _insert(store, "EV-1", tenant="other")
    for _ in range(3):
        assert await store.inbox.claim(T, row)
        assert await store.inbox.retry_later(T, row, "down", next_attempt_at=clock.now)
    assert await store.inbox.claim(T, row)
    assert await store.inbox.mark_failed(T, row, "down")
    assert await store.inbox.claim("other", theirs)
    assert await store.inbox.mark_failed("other", theirs, "down")
    done = await _insert(store, "EV-done")
    assert await store.inbox.claim(T, done)
    assert await store.inbox.mark_processed(T, done)
    clock.now += DAY

    assert await store.inbox.requeue_failed(T, "EV-1") == 1
    assert await store.inbox.requeue_failed(T, "EV-1") == 0  # pending now, not failed
    assert await store.inbox.requeue_failed(T, "EV-done") == 0
    event = await store.inbox.get(T, row)
    assert event is not None
    assert (event.state, event.attempts, event.next_attempt_at, event.queued_at) == (
        "pending", 0, clock.now, clock.now)
    assert event.received_at == clock.now - DAY
    assert [e.id for e in await store.inbox.next_pending(T, 10)] == [row]
    other = await store.inbox.get("other", theirs)
    assert other is not None and other.state == "failed"


async def test_replay_makes_events_due_now_with_a_fresh_retry_window(
    store: Store, clock: FakeClock
) -> None:
    row = await _insert(store, "EV-1")
    assert await store.inbox.claim(T, row)
    assert await store.inbox.mark_processed(T, row)
    clock.now += 100
    assert await store.inbox.reset_for_replay(T, [row]) == 1
    event = await store.inbox.get(T, row)
    assert event is not None
    assert (event.state, event.next_attempt_at, event.queued_at) == (
        "pending", clock.now, clock.now)
    assert [e.id for e in await store.inbox.next_pending(T, 10)] == [row]


# -- retention ---------------------------------------------------------------------------


async def test_prune_deletes_old_settled_events_in_batches(
    store: Store, clock: FakeClock
) -> None:
    """1. 40 days ago: five processed events, one ignored, one failed, one pending;
       the other tenant has an old processed one too
    2. today: one processed event
    3. prune(before = 30 days ago) in batches of 2
    Result: 2, 2, 2, 0 rows deleted: the six old processed and ignored ones only."""
    clock.now -= 40 * DAY
    old = [await _insert(store, f"EV-old-{n}") for n in range(8)]
    theirs = await _insert(store, "EV-theirs", tenant="other")
    for row in old[:6]:
        assert await store.inbox.claim(T, row)
    for row in old[:5]:
        assert await store.inbox.mark_processed(T, row)
    assert await store.inbox.mark_ignored(T, old[5], "unknown event type")
    assert await store.inbox.claim(T, old[6])
    assert await store.inbox.mark_failed(T, old[6], "down")
    assert await store.inbox.claim("other", theirs)
    assert await store.inbox.mark_processed("other", theirs)
    clock.now += 40 * DAY
    recent = await _insert(store, "EV-recent")
    assert await store.inbox.claim(T, recent)
    assert await store.inbox.mark_processed(T, recent)

    cutoff = clock.now - 30 * DAY
    assert [await store.inbox.prune(T, cutoff, limit=2) for _ in range(4)] == [2, 2, 2, 0]
    kept = {e.id for e in await store.inbox.list(T)}
    assert kept == {old[6], old[7], recent}
    assert await store.inbox.get("other", theirs) is not None


async def test_prune_payloads_forgets_old_resolved_webhook_bodies(
    store: Store, clock: FakeClock
) -> None:
    """Resolved `webhook_failed` dead letters older than the cutoff lose their payload
    (the SMS body); open ones, recent ones and other categories keep theirs."""
    clock.now -= 40 * DAY
    add = store.dead_letters.add
    old = await add(T, "webhook", "EV-1", "webhook_failed", '{"text": "hi"}', "down")
    still_open = await add(T, "webhook", "EV-2", "webhook_failed", '{"text": "yo"}', "down")
    record = await add(T, "people", "rec-1", "validation", '{"name": ""}', "bad")
    theirs = await add("other", "webhook", "EV-1", "webhook_failed", '{"text": "x"}', "down")
    for tenant, letter in ((T, old), (T, record), ("other", theirs)):
        assert await store.dead_letters.mark_resolved(tenant, letter)
    clock.now += 40 * DAY
    recent = await add(T, "webhook", "EV-3", "webhook_failed", '{"text": "new"}', "down")
    assert await store.dead_letters.mark_resolved(T, recent)

    cutoff = clock.now - 30 * DAY
    assert await store.dead_letters.prune_payloads(T, cutoff, limit=1) == 1
    assert await store.dead_letters.prune_payloads(T, cutoff, limit=1) == 0
    payloads = {d.id: d.payload for d in await store.dead_letters.list(T, include_resolved=True)}
    assert payloads == {old: "", still_open: '{"text": "yo"}', record: '{"name": ""}',
                        recent: '{"text": "new"}'}
    other = await store.dead_letters.get("other", theirs)
    assert other is not None and other.payload == '{"text": "x"}'


async def test_the_due_selection_uses_an_index(tmp_path: Path) -> None:
    """The processor's query is an index range, not a scan and sort of the pending rows."""
    path = tmp_path / "crmsync.db"
    async with open_store(path):
        pass
    with closing(sqlite3.connect(path)) as conn:
        plan = " ".join(str(row[-1]) for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT * FROM webhook_inbox WHERE tenant_id = ?"
            " AND state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id"
            " LIMIT 50", ("acme", 1.0)))
    assert "INDEX webhook_inbox_due" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
