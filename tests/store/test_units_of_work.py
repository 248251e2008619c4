"""The sync pipeline's units of work, on both engines: a batch of outcomes saved in one
`execute_batch` (`Mappings.save_synced`), a page committed in one (`commit_page`), and
grouped writes that share a commit but succeed or fail alone (`execute_grouped`)."""

from __future__ import annotations

import asyncio

import pytest

from crmsync.store import Store
from crmsync.store.errors import IntegrityError
from crmsync.store.mappings import Mapping, WriteAction

T = "acme"


def row(record_id: str, action: WriteAction, *, at: float = 9.0, method: str = "initial",
        content_hash: str = "new") -> Mapping:
    return Mapping(
        tenant_id=T, crm_object="people", crm_record_id=record_id, quo_contact_id="CT-new",
        entity_type="person", sync_method=method,  # type: ignore[arg-type]
        action=action, content_hash=content_hash, last_synced_at=at,
    )


async def test_save_synced_is_the_per_record_save_for_a_whole_batch(store: Store) -> None:
    """1. `live` is mapped (created), `gone` is mapped but deleted, both have an open
       intent and a dead letter; `fresh` is not mapped
    2. one batch saves `live` and `gone` as unchanged and `fresh` as created
    Result: `live` keeps its action and method (only touched); `gone` is replaced
    whole; `fresh` is inserted; every intent is settled and every letter resolved."""
    await store.mappings.upsert(row("live", "created", at=1.0, method="webhook"))
    await store.mappings.upsert(row("gone", "created", at=1.0))
    await store.mappings.mark_deleted(T, "people", "gone", 2.0)
    for record_id in ("live", "gone", "fresh"):
        await store.intents.begin(T, "people", record_id, "create", "h")
        await store.dead_letters.add(T, "people", record_id, "quo_server", "{}", "boom")

    await store.mappings.save_synced([
        row("live", "unchanged"), row("gone", "unchanged"), row("fresh", "created"),
    ])

    live = await store.mappings.get(T, "people", "live")
    assert live is not None
    assert (live.action, live.sync_method, live.last_synced_at) == ("created", "webhook", 9.0)
    gone = await store.mappings.get(T, "people", "gone")
    assert gone is not None
    assert (gone.action, gone.deleted_at, gone.quo_contact_id) == ("unchanged", None, "CT-new")
    assert await store.mappings.get(T, "people", "fresh") == row("fresh", "created")
    assert await store.intents.pending(T) == []
    assert await store.dead_letters.counts_by_category(T) == {}


async def test_save_synced_of_one_record_twice_keeps_the_last(store: Store) -> None:
    await store.mappings.save_synced([
        row("twice", "created", content_hash="first"),
        row("twice", "updated", content_hash="second"),
    ])
    saved = await store.mappings.get(T, "people", "twice")
    assert saved is not None and (saved.action, saved.content_hash) == ("updated", "second")


async def test_commit_page_writes_cursor_and_counts_or_nothing(store: Store) -> None:
    start = await store.runs.begin(T, full=False, crm_objects=["people"])
    await store.checkpoints.commit_page(
        T, "people", "100", run_id=start.run_id, counts={"fetched": 100, "created": 99}
    )
    assert await store.checkpoints.get(T, "people", "cursor") == "100"
    run = await store.runs.get(T, start.run_id)
    assert run is not None and (run.counts.fetched, run.counts.created) == (100, 99)

    with pytest.raises(KeyError):
        await store.checkpoints.commit_page(
            T, "people", "200", run_id=start.run_id + 1000, counts={"fetched": 100}
        )
    assert await store.checkpoints.get(T, "people", "cursor") == "100"


async def test_grouped_writes_fail_alone(store: Store) -> None:
    """Concurrent grouped writes, one of them refused: it alone raises, the others
    are committed."""
    bad = "INSERT INTO write_intents (tenant_id, crm_object, crm_record_id, operation,"\
          " payload_hash, started_at) VALUES ('nobody', 'people', 'x', 'create', 'h', 1)"
    results = await asyncio.gather(
        *(store.intents.begin(T, "people", f"rec-{n}", "create", "h") for n in range(5)),
        store._db.execute_grouped(bad),
        return_exceptions=True,
    )
    assert results[:5] == [None] * 5
    assert isinstance(results[5], IntegrityError)
    assert len(await store.intents.pending(T)) == 5


async def test_concurrent_lookups_are_answered_each_by_its_own_record(store: Store) -> None:
    """Lookups made at once (answered in one batch) each get their own tenant's record:
    `acme`'s mapping and intent never answer `other`'s lookup of the same id."""
    await store.mappings.upsert(row("rec-1", "created"))
    await store.intents.begin(T, "people", "rec-2", "create", "h")
    answers = await asyncio.gather(
        store.mappings.lookup(T, "people", "rec-1"),
        store.mappings.lookup(T, "people", "rec-2"),
        store.mappings.lookup("other", "people", "rec-1"),
        store.mappings.lookup("other", "people", "rec-2"),
        store.mappings.lookup(T, "companies", "rec-1"),
        store.mappings.lookup(T, "people", "rec-1"),
    )
    assert list(answers) == [
        (row("rec-1", "created"), False), (None, True), (None, False), (None, False),
        (None, False), (row("rec-1", "created"), False),
    ]
