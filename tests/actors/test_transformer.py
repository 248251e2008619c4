"""`Transformer` alone: raw CRM records in, Quo payloads (or failures) out, in order.

Records are real Attio records (made in the Attio simulator, fetched through the
`AttioAdapter`); the transformer's output queue is read after it ran to idle. A good
record becomes a `WriteItem` with a content hash of its payload; a record that cannot
be a contact becomes a `RecordFailed` with a category and the page goes on; `PageEnd`
and `EndOfStream` pass through in the order they came.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from actors.harness import TENANT, Attio, IdleQueue, attio_env, drain, run_actor

from crmsync.actors.base import EndOfStream
from crmsync.actors.messages import (
    PageEnd,
    RawMessage,
    RecordBatch,
    RecordFailed,
    WriteItem,
    WriteMessage,
)
from crmsync.actors.transformer import SLICE, Transformer
from crmsync.adapters.base import CrmRecord, Person
from crmsync.domain.contact import content_hash
from crmsync.quo.models import LabeledValue


@pytest.fixture
async def attio() -> AsyncIterator[Attio]:
    async with attio_env() as attio:
        yield attio


def transformer(attio: Attio) -> tuple[Transformer, asyncio.Queue[WriteMessage]]:
    out: asyncio.Queue[WriteMessage] = asyncio.Queue()
    inbox: IdleQueue[RawMessage] = IdleQueue()
    return Transformer(TENANT, adapter=attio.adapter, inbox=inbox, out=out), out


async def transform(attio: Attio, *records: CrmRecord) -> list[WriteMessage]:
    """Run a fresh transformer over one page of `records`; everything it sent."""
    actor, out = transformer(attio)
    async with run_actor(actor) as running:
        await running.feed(RecordBatch(0, list(records)),
                           PageEnd(0, "people", len(records), None), EndOfStream())
    return drain(out)


async def test_a_good_record_becomes_a_write_item_with_the_hash_of_its_payload(
    attio: Attio,
) -> None:
    """1. Ada has a name, a title, an email, one valid and one unusable phone
    2. her record goes through the transformer.
    Result: one `WriteItem` of page 0 whose payload carries her values (E.164 phone,
    the unusable one dropped and counted) and the hash of exactly that payload."""
    ada = attio.sim.add_person(
        first_name="Ada", last_name="Lovelace", emails=["ada@example.com"],
        phones=["+14155552671", "12"], job_title="Engineer", notify=False,
    )
    actor, out = transformer(attio)

    async with run_actor(actor) as running:
        await running.feed(RecordBatch(0, await attio.records(ada)),
                           PageEnd(0, "people", 1, None), EndOfStream())

    item, page_end, end = drain(out)
    assert isinstance(item, WriteItem)
    assert (item.page, item.crm_object, item.record_id) == (0, "people", ada)
    contact = item.contact
    assert (contact.external_id, contact.source) == (ada, "attio")
    fields = contact.default_fields
    assert (fields.first_name, fields.last_name, fields.role) == ("Ada", "Lovelace", "Engineer")
    assert fields.phone_numbers == [LabeledValue(name="mobile", value="+14155552671")]
    assert [e.value for e in fields.emails] == ["ada@example.com"]
    assert len(item.content_hash) == 64
    assert item.content_hash == content_hash(contact)
    assert actor.dropped_phones == 1
    assert (page_end, end) == (PageEnd(0, "people", 1, None), EndOfStream())


async def test_the_content_hash_is_stable_and_changes_with_the_content(attio: Attio) -> None:
    """1. Ada's record is transformed twice, by two transformers
    2. her job title changes in the CRM and she is transformed again.
    Result: the first two hashes are equal (the writer may skip her); the third differs
    (the writer must update her)."""
    ada = attio.sim.add_person(first_name="Ada", emails=["ada@example.com"], notify=False)

    first, *_ = await transform(attio, *await attio.records(ada))
    again, *_ = await transform(attio, *await attio.records(ada))
    attio.sim.update_person(ada, job_title="Countess", notify=False)
    changed, *_ = await transform(attio, *await attio.records(ada))

    assert isinstance(first, WriteItem)
    assert isinstance(again, WriteItem)
    assert isinstance(changed, WriteItem)
    assert first.content_hash == again.content_hash
    assert changed.content_hash != first.content_hash
    assert changed.contact.default_fields.role == "Countess"


async def test_a_record_that_cannot_be_a_contact_fails_with_its_category_and_the_page_goes_on(
    attio: Attio,
) -> None:
    """1. a page holds Ada, a person with no name, email or phone, and Bob
    2. the page goes through the transformer.
    Result: Ada and Bob become `WriteItem`s; the empty person becomes a `RecordFailed`
    of category `empty_person` between them, carrying the raw record for `crmsync
    errors`; the `PageEnd` still follows."""
    ada = attio.sim.add_person(first_name="Ada", notify=False)
    empty = attio.sim.add_person(notify=False)
    bob = attio.sim.add_person(first_name="Bob", notify=False)

    messages = await transform(attio, *await attio.records(ada, empty, bob))

    assert [type(m).__name__ for m in messages] == [
        "WriteItem", "RecordFailed", "WriteItem", "PageEnd", "EndOfStream"]
    failed = messages[1]
    assert isinstance(failed, RecordFailed)
    assert (failed.page, failed.crm_object, failed.record_id, failed.category) == (
        0, "people", empty, "empty_person")
    assert "no name, email or phone" in failed.error
    assert empty in failed.payload
    assert [m.record_id for m in messages if isinstance(m, WriteItem)] == [ada, bob]


async def test_an_unforeseen_adapter_error_fails_only_that_record_as_transform(
    attio: Attio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. the adapter chokes (KeyError) on one record, a CRM quirk nobody foresaw
    2. a page with that record between two good ones goes through the transformer.
    Result: that record is a `RecordFailed` of category `transform` naming the error;
    the transformer does not crash and the good records still become `WriteItem`s."""
    ada = attio.sim.add_person(first_name="Ada", notify=False)
    odd = attio.sim.add_person(first_name="Odd", notify=False)
    bob = attio.sim.add_person(first_name="Bob", notify=False)
    real = attio.adapter.to_person

    def to_person(record: CrmRecord) -> Person:
        if record.record_id == odd:
            raise KeyError("values")
        return real(record)

    monkeypatch.setattr(attio.adapter, "to_person", to_person)

    messages = await transform(attio, *await attio.records(ada, odd, bob))

    failed = [m for m in messages if isinstance(m, RecordFailed)]
    assert [(f.record_id, f.category, f.error) for f in failed] == [
        (odd, "transform", "KeyError: 'values'")]
    assert [m.record_id for m in messages if isinstance(m, WriteItem)] == [ada, bob]
    assert messages[-2:] == [PageEnd(0, "people", 3, None), EndOfStream()]


async def test_pages_stream_through_in_order_and_the_transformer_stops_at_end_of_stream(
    attio: Attio,
) -> None:
    """1. page 0 (Ada, Bob) and its `PageEnd` are fed; the transformer runs to idle
    2. page 1 (Cy), its `PageEnd`, `EndOfStream` and one stray batch are fed.
    Result: page 0 is out before page 1 is even fed (records stream, nothing waits for
    the end); every record is followed by its own page's `PageEnd`, in order; the
    transformer ends at `EndOfStream` and leaves the stray batch unread."""
    ada, bob, cy = (attio.sim.add_person(first_name=n, notify=False) for n in ("Ada", "Bob", "Cy"))
    records = await attio.records(ada, bob, cy)
    actor, out = transformer(attio)
    stray = RecordBatch(2, records[:1])

    async with run_actor(actor) as running:
        await running.feed(RecordBatch(0, records[:2]), PageEnd(0, "people", 2, "2"))
        await running.idle()
        page_0 = drain(out)
        await running.feed(RecordBatch(1, records[2:]), PageEnd(1, "people", 1, None),
                           EndOfStream(), stray)

    page_1 = drain(out)
    assert [(type(m).__name__, getattr(m, "record_id", None), getattr(m, "page", None))
            for m in page_0] == [
        ("WriteItem", ada, 0), ("WriteItem", bob, 0), ("PageEnd", None, 0)]
    assert isinstance(page_1[0], WriteItem)
    assert (page_1[0].record_id, page_1[0].page) == (cy, 1)
    assert page_1[1:] == [PageEnd(1, "people", 1, None), EndOfStream()]
    assert actor.inbox is not None
    assert actor.inbox.qsize() == 1
    assert actor.inbox.get_nowait() == stray


async def test_a_page_is_transformed_in_slices_that_let_the_loop_turn(attio: Attio) -> None:
    """1. a page of 3 slices' worth of records (the same good record repeated)
    2. while the transformer works through it, another task watches its output queue
       at every turn of the loop.
    Result: every record comes out, in order, and the watcher saw the page partly done
    (it ran between the slices), at 1 and 2 slices' worth of records, then all of it."""
    (record,) = await attio.records(attio.sim.add_person(first_name="Ada", notify=False))
    count = 3 * SLICE
    actor, out = transformer(attio)
    seen: list[int] = []

    async def watch() -> None:
        while True:
            await asyncio.sleep(0)
            if out.qsize() and (not seen or seen[-1] != out.qsize()):
                seen.append(out.qsize())

    watcher = asyncio.create_task(watch())
    try:
        async with run_actor(actor) as running:
            await running.feed(RecordBatch(0, [record] * count),
                               PageEnd(0, "people", count, None), EndOfStream())
    finally:
        watcher.cancel()
    items = drain(out)
    assert [type(m) for m in items] == [WriteItem] * count + [PageEnd, EndOfStream]
    assert seen == [SLICE, 2 * SLICE, 3 * SLICE + 2]  # the last slice, PageEnd, EndOfStream
