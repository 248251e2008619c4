"""`QuoWriter` alone, against the Quo simulator and a real state database.

Each `WriteItem` becomes at most one Quo contact: an unchanged content hash costs no
request, a mapped record is PATCHed, a new one is created after its intent was logged,
a 409 (the externalId is taken) is resolved by linking the existing contact, a Quo 400
becomes a `RecordFailed` for the dead-letter queue, and the same record is never
written twice at once. The writer stores no mapping: it reports outcomes to the
verifier (its output queue, read here after it ran to its end).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from actors.harness import TENANT, IdleQueue, Quo, drain, quo_env, run_actor, state_store

from crmsync.actors.base import EndOfStream
from crmsync.actors.messages import (
    BulkSubmitted,
    Outcome,
    PageEnd,
    RecordFailed,
    VerifyMessage,
    WriteItem,
    WriteMessage,
)
from crmsync.actors.writer import QuoWriter
from crmsync.domain.contact import content_hash
from crmsync.quo.client import QuoClient
from crmsync.quo.errors import QuoAuthError
from crmsync.quo.models import Contact, ContactInput, DefaultFields
from crmsync.services.contact_writes import QuoContactSync
from crmsync.store import Mapping, Store, WriteIntent
from crmsync.store.mappings import WriteAction

T = TypeVar("T")
CONTACTS = "/v1/contacts"


def write_item(record_id: str, first_name: str = "Ada", *, page: int = 0) -> WriteItem:
    contact = ContactInput(
        default_fields=DefaultFields(first_name=first_name, last_name="Lovelace"),
        external_id=record_id, source="attio",
    )
    return WriteItem(page, "people", record_id, contact, content_hash(contact))


class SpySync(QuoContactSync):
    """The real `QuoContactSync`, watched: the write intent each create found in the
    store when it started, and the most Quo calls ever in flight for one record."""

    def __init__(self, quo: QuoClient, store: Store) -> None:
        super().__init__(quo)
        self._store = store
        self.intent_at_create: dict[str, WriteIntent | None] = {}
        self._active: defaultdict[str, set[asyncio.Task[object]]] = defaultdict(set)
        self.most_at_once: defaultdict[str, int] = defaultdict(int)

    async def _watched(self, record_id: str, call: Awaitable[T]) -> T:
        task = asyncio.current_task()
        assert task is not None
        nested = task in self._active[record_id]  # a create's own 409 lookup
        self._active[record_id].add(task)
        self.most_at_once[record_id] = max(self.most_at_once[record_id],
                                           len(self._active[record_id]))
        try:
            return await call
        finally:
            if not nested:
                self._active[record_id].discard(task)

    async def create_contact(
        self, external_id: str, contact: ContactInput
    ) -> tuple[WriteAction, str, str | None]:
        self.intent_at_create[external_id] = await self._store.intents.get(
            TENANT, "people", external_id)
        return await self._watched(external_id, super().create_contact(external_id, contact))

    async def link_existing(self, external_id: str, contact: ContactInput) -> str | None:
        return await self._watched(external_id, super().link_existing(external_id, contact))

    async def update_contact(self, contact_id: str, contact: ContactInput) -> Contact | None:
        record_id = contact.external_id or contact_id
        return await self._watched(record_id, super().update_contact(contact_id, contact))


@dataclass
class Env:
    quo: Quo
    store: Store
    sync: SpySync
    out: asyncio.Queue[VerifyMessage] = field(default_factory=asyncio.Queue)

    def writer(self, *, concurrency: int = 4, bulk_batch_size: int | None = None) -> QuoWriter:
        inbox: IdleQueue[WriteMessage] = IdleQueue()
        return QuoWriter(TENANT, sync=self.sync, store=self.store, inbox=inbox, out=self.out,
                         concurrency=concurrency, sync_method="initial",
                         bulk_batch_size=bulk_batch_size)

    async def write(
        self, *messages: WriteMessage, concurrency: int = 4, bulk_batch_size: int | None = None
    ) -> list[VerifyMessage]:
        """Run a fresh writer over `messages` + `EndOfStream`; everything it sent."""
        writer = self.writer(concurrency=concurrency, bulk_batch_size=bulk_batch_size)
        async with run_actor(writer) as running:
            await running.feed(*messages, EndOfStream())
        return drain(self.out)

    async def map(self, item: WriteItem, quo_contact_id: str, content_hash: str) -> None:
        await self.store.mappings.upsert(Mapping(
            tenant_id=TENANT, crm_object=item.crm_object, crm_record_id=item.record_id,
            quo_contact_id=quo_contact_id, entity_type="person", sync_method="initial",
            action="created", content_hash=content_hash, last_synced_at=0.0,
        ))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with quo_env() as quo, state_store(tmp_path) as store:
        yield Env(quo, store, SpySync(quo.client, store))


def outcome(item: WriteItem, action: WriteAction, contact_id: str) -> Outcome:
    return Outcome(item.page, item.crm_object, item.record_id, action,
                   contact_id, item.content_hash, "initial")


async def test_an_unchanged_record_costs_no_request_and_a_changed_one_one_patch(
    env: Env,
) -> None:
    """1. `same` and `moved` are mapped to Quo contacts; `same`'s stored hash equals
       its new payload's, `moved`'s does not
    2. both go through the writer.
    Result: `same` is `unchanged` with no Quo request; `moved` is `updated` by exactly
    one PATCH of its contact (no create), which now holds the new values."""
    same, moved = write_item("rec-same"), write_item("rec-moved", "Adelaide")
    old = await env.quo.client.create_contact(write_item("rec-moved", "Ada").contact)
    await env.map(same, "CT-same", same.content_hash)
    await env.map(moved, old.id, "hash-of-the-old-payload")
    env.quo.sim.reset_stats()

    messages = await env.write(same, moved)

    assert set(messages[:-1]) == {outcome(same, "unchanged", "CT-same"),
                                  outcome(moved, "updated", old.id)}
    assert messages[-1] == EndOfStream()
    assert env.quo.sim.stats.by_route() == {"PATCH /v1/contacts/{id}": {"200": 1}}
    assert env.quo.contacts_by_external_id()["rec-moved"]["defaultFields"]["firstName"] == (
        "Adelaide")


async def test_a_new_record_is_created_once_after_its_intent_was_logged(env: Env) -> None:
    """1. `rec-new` has no mapping and no open intent
    2. it goes through the writer.
    Result: when the create started, the intent "create rec-new with this hash" was
    already in the store; Quo saw one POST (201, no 409); the outcome is `created` with
    the new contact's id, sent before `EndOfStream`; the intent stays open and no
    mapping is stored: both are the verifier's to settle."""
    item = write_item("rec-new")

    messages = await env.write(item)

    contact = env.quo.contacts_by_external_id()["rec-new"]
    assert messages == [outcome(item, "created", contact["id"]), EndOfStream()]
    intent = env.sync.intent_at_create["rec-new"]
    assert intent is not None
    assert (intent.operation, intent.payload_hash) == ("create", item.content_hash)
    assert env.quo.sim.stats.by_route() == {"POST /v1/contacts": {"201": 1}}
    assert await env.store.intents.get(TENANT, "people", "rec-new") is not None
    assert await env.store.mappings.get(TENANT, "people", "rec-new") is None


async def test_a_duplicate_external_id_409_links_the_existing_contact(env: Env) -> None:
    """1. Quo already has a contact with externalId `rec-dup` (older content), made
       before crmsync knew of it (no mapping, no intent)
    2. `rec-dup` goes through the writer.
    Result: the create gets a 409; the writer looks the contact up by externalId,
    PATCHes it to the new content and reports it `linked`; still one contact."""
    existing = await env.quo.client.create_contact(write_item("rec-dup", "Stale").contact)
    item = write_item("rec-dup", "Ada")
    env.quo.sim.reset_stats()

    messages = await env.write(item)

    assert messages == [outcome(item, "linked", existing.id), EndOfStream()]
    assert env.quo.sim.count("POST", CONTACTS, 409) == 1
    assert env.quo.sim.count("POST", CONTACTS, 201) == 0
    assert env.quo.sim.count("PATCH", "/v1/contacts/{id}", 200) == 1
    (contact,) = env.quo.sim.contacts.contacts.values()
    assert contact["defaultFields"]["firstName"] == "Ada"


async def test_a_quo_400_becomes_a_quo_validation_failure_and_the_stream_goes_on(
    env: Env,
) -> None:
    """1. Quo will answer the next contact POST with 400
    2. `rec-bad`, `rec-good`, an upstream failure and a `PageEnd` go through the
       writer (one write at a time, so `rec-bad` meets the 400).
    Result: `rec-bad` becomes `RecordFailed(category="quo_validation")` (not retried,
    its intent settled: nothing was created); `rec-good` is created; the upstream
    failure and the `PageEnd` pass through unchanged; `EndOfStream` comes last."""
    env.quo.sim.faults.fail(1, status=400, route=f"POST {CONTACTS}")
    bad, good = write_item("rec-bad"), write_item("rec-good", "Bob")
    upstream = RecordFailed(0, "people", "rec-empty", "empty_person", "no name")
    page_end = PageEnd(0, "people", 3, None)

    messages = await env.write(bad, good, upstream, page_end, concurrency=1)

    (failed,) = [m for m in messages
                 if isinstance(m, RecordFailed) and m.record_id == "rec-bad"]
    assert (failed.page, failed.category) == (0, "quo_validation")
    assert "400" in failed.error
    assert env.quo.sim.count("POST", CONTACTS, 400) == 1
    assert await env.store.intents.get(TENANT, "people", "rec-bad") is None
    created = env.quo.contacts_by_external_id()
    assert set(created) == {"rec-good"}
    assert outcome(good, "created", created["rec-good"]["id"]) in messages
    assert upstream in messages
    assert page_end in messages
    assert len(messages) == 5
    assert messages[-1] == EndOfStream()


async def test_the_same_record_twice_in_flight_is_never_written_concurrently(
    env: Env,
) -> None:
    """1. every Quo request takes 50 ms; the writer may run 4 writes at once
    2. the same record arrives twice back to back (offset paging can do that).
    Result: at no moment were two Quo calls for it in flight; the second waited for
    the first, found its open intent and linked the contact the first created: one
    POST, no 409, one contact, both outcomes naming it."""
    env.quo.sim.faults.set_latency(0.05)
    item = write_item("rec-twice")

    messages = await env.write(item, item, concurrency=4)

    assert env.sync.most_at_once["rec-twice"] == 1
    assert env.quo.sim.count("POST", CONTACTS) == 1
    contact_id = env.quo.contacts_by_external_id()["rec-twice"]["id"]
    assert messages == [outcome(item, "created", contact_id),
                        outcome(item, "linked", contact_id), EndOfStream()]


async def test_bulk_mode_batches_creates_and_flushes_the_rest_at_end_of_stream(
    env: Env,
) -> None:
    """1. bulk creates in batches of 2; three new records
    2. they go through the writer.
    Result: two `POST /contacts/bulk` (2 + the remaining 1, flushed at the end), no
    single creates; each record's `bulk_create` intent is logged; the verifier gets
    one `BulkSubmitted` per batch, then `EndOfStream`."""
    items = [write_item(f"rec-{n}", f"P{n}") for n in range(3)]

    messages = await env.write(*items, concurrency=1, bulk_batch_size=2)

    assert [type(m) for m in messages] == [BulkSubmitted, BulkSubmitted, EndOfStream]
    assert [m.items for m in messages if isinstance(m, BulkSubmitted)] == [items[:2], items[2:]]
    assert env.quo.sim.stats.by_route() == {"POST /v1/contacts/bulk": {"202": 2}}
    intents = await env.store.intents.pending(TENANT)
    assert sorted((i.crm_record_id, i.operation) for i in intents) == [
        ("rec-0", "bulk_create"), ("rec-1", "bulk_create"), ("rec-2", "bulk_create")]


async def test_a_rejected_api_key_stops_the_writer_for_its_supervisor(tmp_path: Path) -> None:
    """1. the writer's Quo key is not one Quo knows (401)
    2. a new record goes through the writer.
    Result: the writer does not dead-letter the record: `QuoAuthError` escapes `run()`
    (the supervisor parks the tenant) and no `EndOfStream` is sent on."""
    async with quo_env(client_key="not-a-key") as quo, state_store(tmp_path) as store:
        env = Env(quo, store, SpySync(quo.client, store))
        with pytest.RaisesGroup(QuoAuthError):
            await env.write(write_item("rec-new"))
        assert drain(env.out) == []
        assert quo.sim.count("POST", CONTACTS, 401) == 1
