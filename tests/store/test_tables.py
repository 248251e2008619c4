"""Behaviour of each table's repository: upserts, state machines, counters, queues."""

from __future__ import annotations

import asyncio
import sqlite3

import msgspec
import pytest
from support.clock import FakeClock

from crmsync.store import (
    Activity,
    Counts,
    IllegalTransitionError,
    Mapping,
    RunState,
    Store,
)

T = "acme"



def mapping(record: str = "rec-1", **changes: object) -> Mapping:
    row = Mapping(
        tenant_id=T,
        crm_object="people",
        crm_record_id=record,
        quo_contact_id=f"quo-{record}",
        entity_type="person",
        sync_method="initial",
        action="created",
        content_hash="h1",
        last_synced_at=1.0,
    )
    return msgspec.structs.replace(row, **changes)


# -- tenants ------------------------------------------------------------------------


async def test_tenant_lifecycle(store: Store, clock: FakeClock) -> None:
    tenant = await store.tenants.get(T)
    assert tenant is not None
    assert (tenant.state, tenant.phase, tenant.last_error) == ("starting", "setup", None)
    await store.tenants.set_state(T, "failed", last_error="boom")
    await store.tenants.set_state(T, "running", phase="initial_sync")  # error kept
    tenant = await store.tenants.get(T)
    assert tenant is not None
    assert (tenant.state, tenant.phase, tenant.last_error) == ("running", "initial_sync", "boom")
    await store.tenants.clear_error(T)
    await store.tenants.mark_initial_sync_completed(T, 5.0)
    await store.tenants.mark_success(T, 6.0)
    clock.now += 10
    await store.tenants.upsert(T, "pipedrive")  # re-registering keeps the state
    tenant = await store.tenants.get(T)
    assert tenant is not None
    assert tenant.crm == "pipedrive" and tenant.state == "running" and tenant.last_error is None
    assert (tenant.initial_sync_completed_at, tenant.last_success_at) == (5.0, 6.0)
    assert tenant.updated_at == clock.now


async def test_list_all_lists_every_tenant_and_unknown_tenants_raise(store: Store) -> None:
    await store.tenants.upsert("zeta", "hubspot")
    assert [t.tenant_id for t in await store.tenants.list_all()] == [T, "other", "zeta"]
    assert await store.tenants.get("nobody") is None
    with pytest.raises(KeyError, match="nobody"):
        await store.tenants.set_state("nobody", "running")


async def test_rows_of_an_unregistered_tenant_are_rejected(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await store.checkpoints.set("nobody", "people", "cursor", "1")


async def test_state_values_are_checked_by_the_schema(store: Store) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await store.tenants.set_state(T, "sleeping")  # type: ignore[arg-type]


# -- sync runs ----------------------------------------------------------------------


async def test_run_goes_pending_running_completed(store: Store, clock: FakeClock) -> None:
    run_id = await store.runs.create(T, "initial")
    run = await store.runs.get(T, run_id)
    assert run is not None and run.state == "pending" and run.started_at is None
    clock.now += 1
    await store.runs.transition(T, run_id, "running")
    clock.now += 1
    await store.runs.transition(T, run_id, "completed")
    run = await store.runs.get(T, run_id)
    assert run is not None
    assert (run.state, run.started_at, run.finished_at) == (
        "completed",
        clock.now - 1,
        clock.now,
    )


ILLEGAL: list[tuple[list[RunState], RunState]] = [
    (["running", "completed"], "running"),
    (["running", "completed"], "failed"),
    (["running", "failed"], "completed"),
    (["cancelled"], "running"),
    ([], "completed"),
    ([], "pending"),
    (["running"], "pending"),
    (["running"], "running"),
]


@pytest.mark.parametrize(("path", "target"), ILLEGAL)
async def test_illegal_run_transitions_raise(
    store: Store, path: list[RunState], target: RunState
) -> None:
    run_id = await store.runs.create(T, "incremental")
    for state in path:
        await store.runs.transition(T, run_id, state)
    with pytest.raises(IllegalTransitionError, match=f"to {target}"):
        await store.runs.transition(T, run_id, target)
    run = await store.runs.get(T, run_id)
    assert run is not None and run.state == (path[-1] if path else "pending")


async def test_failed_run_keeps_its_error_and_unknown_runs_raise(store: Store) -> None:
    run_id = await store.runs.create(T, "full")
    await store.runs.transition(T, run_id, "running")
    await store.runs.transition(T, run_id, "failed", error="CRM returned 500")
    run = await store.runs.get(T, run_id)
    assert run is not None and run.error == "CRM returned 500" and run.finished_at is not None
    with pytest.raises(KeyError):
        await store.runs.transition(T, 999, "running")
    with pytest.raises(KeyError):
        await store.runs.add_counts(T, 999, created=1)


async def test_counts_aggregate_atomically(store: Store) -> None:
    run_id = await store.runs.create(T, "initial")
    await asyncio.gather(
        *(store.runs.add_counts(T, run_id, created=1, fetched=2) for _ in range(50))
    )
    await store.runs.add_counts(T, run_id, failed=3, unchanged=4)
    await store.runs.add_counts(T, run_id)  # nothing to add
    with pytest.raises(ValueError, match="bogus"):
        await store.runs.add_counts(T, run_id, bogus=1)
    run = await store.runs.get(T, run_id)
    assert run is not None
    assert run.counts == Counts(fetched=100, created=50, failed=3, unchanged=4)
    other = await store.runs.create(T, "incremental")
    await store.runs.add_counts(T, other, created=1, deleted=2)
    assert await store.runs.totals(T) == Counts(
        fetched=100, created=51, failed=3, unchanged=4, deleted=2
    )
    latest = await store.runs.latest(T)
    assert latest is not None and latest.id == other
    initial = await store.runs.latest(T, kind="initial")
    assert initial is not None and initial.id == run_id
    assert await store.runs.totals("nobody") == Counts()


# -- checkpoints --------------------------------------------------------------------


async def test_checkpoints_set_get_delete(store: Store) -> None:
    assert await store.checkpoints.get(T, "people", "cursor") is None
    await store.checkpoints.set(T, "people", "cursor", "page-2")
    await store.checkpoints.set(T, "people", "cursor", "page-3")
    await store.checkpoints.set(T, "companies", "cursor", "page-9")
    assert await store.checkpoints.get(T, "people", "cursor") == "page-3"
    assert [(c.crm_object, c.value) for c in await store.checkpoints.all(T)] == [
        ("companies", "page-9"),
        ("people", "page-3"),
    ]
    assert await store.checkpoints.delete(T, "people", "cursor") is True
    assert await store.checkpoints.delete(T, "people", "cursor") is False
    assert await store.checkpoints.get(T, "people", "cursor") is None


# -- mappings -----------------------------------------------------------------------


async def test_mapping_is_unique_per_record_and_upsert_updates(store: Store) -> None:
    await store.mappings.upsert(mapping())
    await store.mappings.upsert(mapping(action="updated", content_hash="h2", sync_method="poll"))
    await store.mappings.upsert(mapping(crm_object="companies"))  # another object: own row
    assert await store.mappings.count(T) == 2
    row = await store.mappings.get(T, "people", "rec-1")
    assert row == mapping(action="updated", content_hash="h2", sync_method="poll")


async def test_mark_deleted_keeps_the_row(store: Store) -> None:
    await store.mappings.upsert(mapping())
    await store.mappings.upsert(mapping("rec-2"))
    assert await store.mappings.mark_deleted(T, "people", "rec-1", 7.0) is True
    assert await store.mappings.mark_deleted(T, "people", "missing", 7.0) is False
    row = await store.mappings.get(T, "people", "rec-1")
    assert row is not None and (row.action, row.deleted_at) == ("deleted", 7.0)
    assert await store.mappings.count(T) == 1
    assert await store.mappings.count(T, include_deleted=True) == 2
    live = [m.crm_record_id async for m in store.mappings.iter_all(T, include_deleted=False)]
    assert live == ["rec-2"]
    await store.mappings.upsert(mapping(action="created"))  # the record came back
    row = await store.mappings.get(T, "people", "rec-1")
    assert row is not None and row.deleted_at is None


async def test_get_many_and_by_quo_contact(store: Store) -> None:
    async with store.transaction():  # one commit for all rows
        for i in range(600):  # more than one IN (...) chunk
            await store.mappings.upsert(
                mapping(f"rec-{i}", quo_contact_id="shared" if i < 2 else f"q{i}")
            )
    wanted = [f"rec-{i}" for i in range(0, 700, 3)] + ["rec-0"]
    found = await store.mappings.get_many(T, "people", wanted)
    assert set(found) == {f"rec-{i}" for i in range(0, 600, 3)}
    assert found["rec-3"].quo_contact_id == "q3"
    assert await store.mappings.get_many(T, "people", []) == {}
    shared = await store.mappings.by_quo_contact(T, "shared")
    assert [m.crm_record_id for m in shared] == ["rec-0", "rec-1"]


@pytest.mark.parametrize("chunk_size", [1, 7, 500, 1000])
async def test_iter_all_streams_every_mapping_once(store: Store, chunk_size: int) -> None:
    for i in range(25):
        await store.mappings.upsert(mapping(f"rec-{i:02d}"))
    seen = [m.crm_record_id async for m in store.mappings.iter_all(T, chunk_size=chunk_size)]
    assert seen == [f"rec-{i:02d}" for i in range(25)]


async def test_writes_between_chunks_of_iter_all_do_not_block(store: Store) -> None:
    for i in range(10):
        await store.mappings.upsert(mapping(f"rec-{i}"))
    seen = []
    async for row in store.mappings.iter_all(T, chunk_size=3):
        seen.append(row.crm_record_id)
        await store.mappings.upsert(mapping(row.crm_record_id, content_hash="touched"))
    assert len(seen) == 10
    assert {m.content_hash async for m in store.mappings.iter_all(T)} == {"touched"}


# -- write intents ------------------------------------------------------------------


async def test_intent_log_begin_settle_pending(store: Store, clock: FakeClock) -> None:
    await store.intents.begin(T, "people", "rec-1", "create", "p1")
    clock.now += 1
    await store.intents.begin(T, "people", "rec-2", "bulk_create", "p2")
    clock.now += 1
    await store.intents.begin(T, "people", "rec-1", "update", "p3")  # replaces rec-1's
    assert await store.intents.settle(T, "people", "rec-2") is True
    assert await store.intents.settle(T, "people", "rec-2") is False
    pending = await store.intents.pending(T)
    assert [(i.crm_record_id, i.operation, i.payload_hash) for i in pending] == [
        ("rec-1", "update", "p3")
    ]
    assert pending[0].started_at == clock.now
    assert await store.intents.get(T, "people", "rec-1") == pending[0]


# -- webhook inbox ------------------------------------------------------------------


async def test_duplicate_event_returns_none_and_keeps_one_row(store: Store) -> None:
    first = await store.inbox.insert(T, "crm", "evt-1", "record.updated", b"\x00{}", {"a": "1"})
    again = await store.inbox.insert(T, "crm", "evt-1", "record.updated", b"other", {})
    other_source = await store.inbox.insert(T, "quo", "evt-1", "call.completed", b"q", {})
    assert isinstance(first, int) and isinstance(other_source, int)
    assert again is None
    assert len(await store.inbox.list(T)) == 2
    event = await store.inbox.get_by_event_id(T, "crm", "evt-1")
    assert event is not None and event.id == first
    assert (event.body, event.headers, event.state) == (b"\x00{}", {"a": "1"}, "pending")


async def test_concurrent_duplicate_deliveries_store_one_event(store: Store) -> None:
    results = await asyncio.gather(
        *(store.inbox.insert(T, "quo", "evt-x", "message.received", b"{}", {}) for _ in range(20))
    )
    assert sum(r is not None for r in results) == 1
    assert len(await store.inbox.list(T)) == 1


async def test_inbox_processing_states(store: Store, clock: FakeClock) -> None:
    ids = [await store.inbox.insert(T, "crm", f"e{i}", "t", b"", {}) for i in range(4)]
    a, b, c, d = (i for i in ids if i is not None)
    assert [e.id for e in await store.inbox.next_pending(T, 10)] == [a, b, c, d]
    assert [e.id for e in await store.inbox.next_pending(T, 2)] == [a, b]
    for event_id in (a, b, c):
        assert await store.inbox.mark_processing(T, event_id)
    clock.now += 5
    await store.inbox.mark_processed(T, a)
    await store.inbox.mark_failed(T, b, "CRM 500")
    await store.inbox.mark_ignored(T, d, "unsupported event type")
    assert [e.id for e in await store.inbox.next_pending(T, 10)] == []
    event_a, event_b = await store.inbox.get(T, a), await store.inbox.get(T, b)
    assert event_a is not None and event_b is not None
    assert (event_a.state, event_a.attempts, event_a.processed_at) == ("processed", 1, clock.now)
    assert (event_b.state, event_b.attempts, event_b.last_error) == ("failed", 1, "CRM 500")
    assert await store.inbox.mark_processed(T, 999) is False
    # a crash left `c` in processing: it goes back to pending at start-up
    assert await store.inbox.requeue_interrupted(T) == 1
    assert [e.id for e in await store.inbox.next_pending(T, 10)] == [c]


async def test_replay_and_listing_since(store: Store, clock: FakeClock) -> None:
    old = await store.inbox.insert(T, "crm", "old", "t", b"", {})
    clock.now += 100
    new = await store.inbox.insert(T, "crm", "new", "t", b"", {})
    assert old is not None and new is not None
    for event_id in (old, new):
        await store.inbox.mark_processing(T, event_id)
        await store.inbox.mark_processed(T, event_id)
    assert [e.id for e in await store.inbox.list(T)] == [new, old]  # newest first
    assert [e.id for e in await store.inbox.list(T, since=clock.now)] == [new]
    assert [e.id for e in await store.inbox.list(T, limit=1)] == [new]
    assert await store.inbox.reset_for_replay(T, [new, 12345]) == 1
    replayed = await store.inbox.get(T, new)
    assert replayed is not None
    assert (replayed.state, replayed.processed_at, replayed.attempts) == ("pending", None, 1)
    assert await store.inbox.prune(T, before=clock.now) == 1  # the processed old one
    assert await store.inbox.get(T, old) is None
    assert await store.inbox.get(T, new) is not None


# -- dead letters -------------------------------------------------------------------


async def test_dead_letters(store: Store, clock: FakeClock) -> None:
    a = await store.dead_letters.add(T, "people", "rec-1", "invalid_phone", "{}", "bad +1")
    b = await store.dead_letters.add(T, "people", "rec-2", "quo_server", "{}", "503", 10.0)
    c = await store.dead_letters.add(T, "people", None, "quo_server", "{}", "503", 20.0)
    assert await store.dead_letters.counts_by_category(T) == {"invalid_phone": 1, "quo_server": 2}
    assert [d.id for d in await store.dead_letters.due_for_retry(T, now=15.0)] == [b]
    assert await store.dead_letters.record_attempt(T, b, "502", next_retry_at=30.0)
    row = await store.dead_letters.get(T, b)
    assert row is not None and (row.attempts, row.error, row.next_retry_at) == (2, "502", 30.0)
    assert await store.dead_letters.mark_resolved(T, c) is True
    assert await store.dead_letters.mark_resolved(T, c) is False
    assert await store.dead_letters.counts_by_category(T) == {"invalid_phone": 1, "quo_server": 1}
    assert [d.id for d in await store.dead_letters.list(T)] == [a, b]
    assert len(await store.dead_letters.list(T, include_resolved=True)) == 3
    assert await store.dead_letters.retry_now(T, clock.now, [a]) == 1
    assert [d.id for d in await store.dead_letters.due_for_retry(T, clock.now)] == [b, a]
    assert await store.dead_letters.retry_now(T, 1.0) == 2  # --all: every unresolved one
    resolved = await store.dead_letters.get(T, c)
    assert resolved is not None and resolved.next_retry_at is None
    assert resolved.resolved_at == clock.now


# -- activities ---------------------------------------------------------------------


async def test_activity_upsert_keeps_created_at(store: Store) -> None:
    row = Activity(
        tenant_id=T,
        quo_object_id="ACabc",
        crm_person_id="rec-1",
        kind="call",
        crm_note_id=None,
        has_summary=False,
        has_transcript=False,
        content_hash="h1",
        created_at=1.0,
        updated_at=1.0,
    )
    await store.activities.upsert(row)
    later = msgspec.structs.replace(
        row,
        crm_note_id="note-1",
        has_summary=True,
        content_hash="h2",
        created_at=9.0,
        updated_at=9.0,
    )
    await store.activities.upsert(later)
    await store.activities.upsert(msgspec.structs.replace(row, crm_person_id="rec-2"))
    got = await store.activities.get(T, "ACabc", "rec-1")
    assert got == msgspec.structs.replace(later, created_at=1.0)
    assert got is not None and got.has_summary is True and got.has_transcript is False
    assert [a.crm_person_id for a in await store.activities.for_quo_object(T, "ACabc")] == [
        "rec-1",
        "rec-2",
    ]
    assert await store.activities.get(T, "ACabc", "rec-3") is None


async def test_a_record_keeps_one_open_dead_letter_until_it_syncs(store: Store) -> None:
    """1. record rec-1 fails on three passes 2. then syncs
    Result: one open letter with attempts 3 and the last error; then none open."""
    first = await store.dead_letters.add(T, "people", "rec-1", "quo_server", "{}", "500")
    await store.dead_letters.add(T, "people", "rec-1", "quo_server", "{}", "502")
    again = await store.dead_letters.add(T, "people", "rec-1", "quo_validation", "{}", "400")
    assert again == first
    letters = await store.dead_letters.list(T)
    assert [(d.attempts, d.category, d.error) for d in letters] == [(3, "quo_validation", "400")]
    assert await store.dead_letters.resolve_for_record(T, "people", "rec-1") == 1
    assert await store.dead_letters.list(T) == []
    # A later failure opens a new letter rather than reviving the resolved one.
    assert await store.dead_letters.add(T, "people", "rec-1", "quo_server", "{}", "x") != first
