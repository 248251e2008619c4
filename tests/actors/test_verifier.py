"""`MappingVerifier` alone: where sync results become durable, in a real state database.

An `Outcome` becomes a mapping (and settles the record's write intent); a
`RecordFailed` becomes a dead letter with its category; a page's cursor is committed
(with the run's counts) only once every record of that page and of every earlier page
is settled, so a restart resumes with no gap. Bulk creates, which come without ids, are
found in the Quo simulator by externalId. The tests feed the inbox in phases and run
the verifier to idle (`IdleQueue`) between them to look at the store.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from actors.harness import TENANT, IdleQueue, Quo, quo_env, run_actor, state_store
from prometheus_client import REGISTRY

from crmsync.actors.base import EndOfStream
from crmsync.actors.messages import (
    BulkSubmitted,
    Outcome,
    PageEnd,
    RecordFailed,
    VerifyMessage,
    WriteItem,
)
from crmsync.actors.verifier import BulkOptions, MappingVerifier
from crmsync.domain.contact import content_hash
from crmsync.net.retry import RetryPolicy
from crmsync.quo.models import ContactInput, DefaultFields
from crmsync.services.contact_writes import QuoContactSync
from crmsync.store import Counts, Store
from crmsync.store.checkpoints import CURSOR, CURSOR_DONE


@dataclass
class Env:
    quo: Quo
    store: Store
    run_id: int
    settled: list[str] = field(default_factory=list)

    def verifier(self, bulk: BulkOptions | None = None) -> MappingVerifier:
        inbox: IdleQueue[VerifyMessage] = IdleQueue()
        return MappingVerifier(TENANT, store=self.store, sync=QuoContactSync(self.quo.client),
                               inbox=inbox, run_id=self.run_id, bulk=bulk,
                               on_settled=self.settled.append)

    async def cursor(self) -> str | None:
        return await self.store.checkpoints.get(TENANT, "people", CURSOR)

    async def counts(self) -> Counts:
        run = await self.store.runs.get(TENANT, self.run_id)
        assert run is not None
        return run.counts

    async def mapped(self) -> set[str]:
        return {m.crm_record_id async for m in self.store.mappings.iter_all(TENANT)}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with quo_env(bulk_visibility_delay=(0.0, 0.0)) as quo, state_store(tmp_path) as store:
        start = await store.runs.begin(TENANT, full=False, crm_objects=["people"])
        yield Env(quo, store, start.run_id)


def created(page: int, record_id: str) -> Outcome:
    return Outcome(page, "people", record_id, "created", f"CT-{record_id}", f"hash-{record_id}",
                   "initial")


async def test_an_outcome_stores_the_mapping_and_settles_the_intent(env: Env) -> None:
    """1. `rec-1` has an open create intent and an open dead letter from an earlier pass
    2. its `Outcome` (created as CT-rec-1) and its page's end (the last page) arrive.
    Result: the mapping holds the contact id, action, hash and sync method; the intent
    is settled and the dead letter resolved; the page is committed: the object is
    done and the run counts one fetched, one created."""
    await env.store.intents.begin(TENANT, "people", "rec-1", "create", "hash-rec-1")
    await env.store.dead_letters.add(TENANT, "people", "rec-1", "quo_server", "", "502")

    async with run_actor(env.verifier()) as running:
        await running.feed(created(0, "rec-1"), PageEnd(0, "people", 1, None), EndOfStream())

    mapping = await env.store.mappings.get(TENANT, "people", "rec-1")
    assert mapping is not None
    assert (mapping.quo_contact_id, mapping.action, mapping.content_hash,
            mapping.sync_method, mapping.entity_type) == (
        "CT-rec-1", "created", "hash-rec-1", "initial", "person")
    assert await env.store.intents.pending(TENANT) == []
    assert await env.store.dead_letters.list(TENANT) == []
    assert env.settled == ["created"]
    assert await env.cursor() == CURSOR_DONE
    counts = await env.counts()
    assert (counts.fetched, counts.created, counts.failed) == (1, 1, 0)


async def test_a_cursor_is_committed_only_when_its_page_and_every_earlier_page_are_settled(
    env: Env,
) -> None:
    """1. page 0 (2 records, next cursor "2") has only `a` settled; page 1 (1 record,
       next cursor "3") is complete → nothing may be committed yet
    2. `b`, page 0's last record, is settled → pages 0 and 1 are committed, in order
    3. page 2 (the last: `d`, which failed) ends → the object is done.
    Result after each phase: no cursor, then "3", then `CURSOR_DONE`; the run's counts
    grow with the committed pages only."""
    async with run_actor(env.verifier()) as running:
        await running.feed(created(0, "a"), PageEnd(0, "people", 2, "2"),
                           created(1, "c"), PageEnd(1, "people", 1, "3"))
        await running.idle()
        assert await env.mapped() == {"a", "c"}  # the outcomes were handled...
        assert await env.cursor() is None  # ...but page 0 is not complete
        assert (await env.counts()).fetched == 0

        await running.feed(created(0, "b"))
        await running.idle()
        assert await env.cursor() == "3"
        counts = await env.counts()
        assert (counts.fetched, counts.created) == (3, 3)

        await running.feed(RecordFailed(2, "people", "d", "empty_person", "no name"),
                           PageEnd(2, "people", 1, None), EndOfStream())

    assert await env.cursor() == CURSOR_DONE
    counts = await env.counts()
    assert (counts.fetched, counts.created, counts.failed) == (4, 3, 1)
    assert env.settled == ["created", "created", "created", "failed"]


async def test_a_record_failure_is_dead_lettered_with_its_category(env: Env) -> None:
    """1. `rec-bad` failed upstream (Quo answered 400) and its page ends
    2. the verifier runs.
    Result: one open dead letter for `rec-bad` with category `quo_validation`, the
    error and the payload; no mapping; the record counts as settled (failed), so its
    page is still committed."""
    failed = RecordFailed(0, "people", "rec-bad", "quo_validation", "400: bad phone",
                          '{"id": "rec-bad"}')

    async with run_actor(env.verifier()) as running:
        await running.feed(failed, PageEnd(0, "people", 1, None), EndOfStream())

    (dead,) = await env.store.dead_letters.list(TENANT)
    assert (dead.crm_object, dead.crm_record_id, dead.category, dead.error, dead.payload) == (
        "people", "rec-bad", "quo_validation", "400: bad phone", '{"id": "rec-bad"}')
    assert dead.resolved_at is None
    assert await env.mapped() == set()
    assert env.settled == ["failed"]
    assert await env.cursor() == CURSOR_DONE
    assert (await env.counts()).failed == 1


def store_writes(write: str) -> float:
    return REGISTRY.get_sample_value(
        "crmsync_store_write_seconds_count", {"tenant": TENANT, "write": write}) or 0.0


async def test_every_store_write_is_timed(env: Env) -> None:
    """1. page 0 holds two created records, page 1 one failure (the last page)
    2. the verifier runs to the end.
    Result: `crmsync_store_write_seconds` counted two mapping writes, one dead letter
    and two checkpoints (one per page) for the tenant."""
    before = {write: store_writes(write) for write in ("mapping", "dead_letter", "checkpoint")}
    async with run_actor(env.verifier()) as running:
        await running.feed(created(0, "a"), created(0, "b"), PageEnd(0, "people", 2, "2"),
                           RecordFailed(1, "people", "c", "empty_person", "no name"),
                           PageEnd(1, "people", 1, None), EndOfStream())
    after = {write: store_writes(write) - before[write] for write in before}
    assert after == {"mapping": 2, "dead_letter": 1, "checkpoint": 2}


def new_item(record_id: str) -> WriteItem:
    contact = ContactInput(default_fields=DefaultFields(first_name=record_id),
                           external_id=record_id, source="attio")
    return WriteItem(0, "people", record_id, contact, content_hash(contact))


async def test_bulk_created_contacts_are_found_by_external_id_and_a_missing_one_made_singly(
    env: Env,
) -> None:
    """1. `rec-a` and `rec-b` were bulk-created (intents logged); Quo never makes
       `rec-b` visible
    2. their `BulkSubmitted`, the page end and `EndOfStream` arrive at once.
    Result: the verifier finishes only after checking: `rec-a` is mapped to the contact
    Quo shows for it (sync method `bulk`); `rec-b` is created singly once the deadline
    passed, mapped, and reported missing; both intents are settled; the page commits."""
    a, b = new_item("rec-a"), new_item("rec-b")
    for item in (a, b):
        await env.store.intents.begin(TENANT, "people", item.record_id, "bulk_create",
                                      item.content_hash)
    env.quo.sim.bulk_never_visible = {"rec-b"}
    await env.quo.client.bulk_create_contacts([a.contact, b.contact])
    env.quo.sim.bulk.flush()  # what Quo will ever show is visible before the first check
    bulk = BulkOptions(first_check_after=0.0, deadline=0.3,
                       retry=RetryPolicy(base_delay=0.01, max_delay=0.02))
    verifier = env.verifier(bulk)

    async with run_actor(verifier) as running:
        await running.feed(BulkSubmitted([a, b], time.time()), PageEnd(0, "people", 2, None),
                           EndOfStream())

    contacts = env.quo.contacts_by_external_id()
    mapping_a = await env.store.mappings.get(TENANT, "people", "rec-a")
    mapping_b = await env.store.mappings.get(TENANT, "people", "rec-b")
    assert mapping_a is not None
    assert mapping_b is not None
    assert (mapping_a.quo_contact_id, mapping_a.sync_method) == (contacts["rec-a"]["id"], "bulk")
    assert (mapping_b.quo_contact_id, mapping_b.sync_method) == (
        contacts["rec-b"]["id"], "initial")
    assert verifier.bulk_missing == ["rec-b"]
    assert env.quo.sim.count("POST", "/v1/contacts", 201) == 1
    assert await env.store.intents.pending(TENANT) == []
    assert await env.cursor() == CURSOR_DONE
    assert (await env.counts()).created == 2
