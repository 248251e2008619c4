"""The real `Transformer` over pages that mix good records with bad ones of any shape.

Pages are made of three kinds of Attio records (see `support.fuzz`): good ones (an id
and a current first name; anything else odd), bad ones (an id Quo cannot take, or no
usable name, email or phone, in whatever shape) and records of any shape at all. The
property: the transformer emits exactly one `WriteItem` per record that can be a
contact and one `RecordFailed` with a category per record that cannot, in the order
they came, each page closed by its own `PageEnd`; a good record is never dropped, and
a bad one never stops the page.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aiohttp
import msgspec
from actors.harness import TENANT, IdleQueue, drain, run_actor
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzz import (
    ANY_ATTIO_RECORD,
    JSON,
    JSON_SCALARS,
    NAMES,
    UUIDS,
    as_received,
    good_attio_records,
    record_id_of,
)

from crmsync.actors.base import EndOfStream
from crmsync.actors.messages import (
    PageEnd,
    RawMessage,
    RecordBatch,
    RecordFailed,
    WriteItem,
    WriteMessage,
)
from crmsync.actors.transformer import Transformer
from crmsync.adapters.attio import AttioAdapter
from crmsync.adapters.base import CrmRecord
from crmsync.domain.contact import MAX_EXTERNAL_ID, TransformError, build_contact

# `to_person` reads only the record: the adapter's session is never used here.
ADAPTER = AttioAdapter(cast(aiohttp.ClientSession, None), api_key="fuzz")
CATEGORIES = {"validation", "empty_person"}

Kind = str  # "good" | "bad" | "any"


def _with_id(record: Any, record_id: str) -> dict[str, Any]:
    """`record` (an object, or an empty one) with the id `record_id`."""
    out: dict[str, Any] = dict(record) if isinstance(record, dict) else {}
    out["id"] = {"record_id": record_id}
    return out


BLANK = st.sampled_from(["", " ", "\t\n", "\u00a0"])
#: values that hold nothing a contact can be made of, in any shape
UNUSABLE_VALUES = st.one_of(
    JSON_SCALARS | st.lists(JSON, max_size=3),
    st.fixed_dictionaries({}, optional={
        "name": st.lists(st.fixed_dictionaries({}, optional={
            "first_name": BLANK, "last_name": BLANK, "full_name": BLANK,
        })) | JSON_SCALARS,
        "email_addresses": st.lists(st.fixed_dictionaries({
            "email_address": st.sampled_from(["", "no-at-sign", "@", " @x", "\t"]),
        }), max_size=2),
        "phone_numbers": st.lists(st.fixed_dictionaries({
            "original_phone_number": st.sampled_from(["", "12", "call me", "+1 555", "000"]),
        }), max_size=2),
        "job_title": st.lists(st.fixed_dictionaries({"value": NAMES}), max_size=1),
    }),
)
BAD_RECORDS = st.one_of(
    # an id Quo cannot take as externalId, on a record of any shape
    st.builds(_with_id, ANY_ATTIO_RECORD,
              st.sampled_from(["", "r" * (MAX_EXTERNAL_ID + 1)])
              | st.text(min_size=MAX_EXTERNAL_ID + 1, max_size=90)),
    # a fine id, but nothing to name the contact by
    st.builds(lambda record_id, values, url: {"id": {"record_id": record_id},
                                              "values": values, "web_url": url},
              UUIDS, UNUSABLE_VALUES, NAMES),
).map(as_received)
RECORDS: st.SearchStrategy[tuple[Kind, Any]] = st.one_of(
    st.tuples(st.just("good"), good_attio_records()),
    st.tuples(st.just("bad"), BAD_RECORDS),
    st.tuples(st.just("any"), ANY_ATTIO_RECORD),
)
PAGES = st.lists(st.lists(RECORDS, max_size=6), min_size=1, max_size=3)


def expected(page: int, record: CrmRecord) -> WriteItem | RecordFailed:
    """What the transformer must send for `record`: the domain's own answer."""
    try:
        result = build_contact(ADAPTER.to_person(record), ADAPTER.name)
    except TransformError as error:
        return RecordFailed(page, record.crm_object, record.record_id, error.category,
                            str(error), msgspec.json.encode(record.raw).decode())
    return WriteItem(page, record.crm_object, record.record_id, result.contact,
                     result.content_hash)


@settings(max_examples=60, deadline=None)
@given(pages=PAGES)
async def test_one_write_item_per_good_record_and_one_failure_per_bad_one_in_order(
    pages: list[list[tuple[Kind, Any]]],
) -> None:
    # The adapter drops a raw record without a string id before it is a CrmRecord.
    kept = [[(kind, CrmRecord(crm_object="people", record_id=record_id, raw=raw))
             for kind, raw in page if (record_id := record_id_of(raw)) is not None]
            for page in pages]
    out: asyncio.Queue[WriteMessage] = asyncio.Queue()
    inbox: IdleQueue[RawMessage] = IdleQueue()
    transformer = Transformer(TENANT, adapter=ADAPTER, inbox=inbox, out=out)
    fed: list[RawMessage] = []
    for number, page in enumerate(kept):
        records = [record for _, record in page]
        cursor = None if number == len(kept) - 1 else str(number + 1)
        fed += [RecordBatch(number, records), PageEnd(number, "people", len(records), cursor)]

    async with run_actor(transformer) as running:
        await running.feed(*fed, EndOfStream())

    sent = drain(out)
    want: list[WriteMessage] = []
    for number, page in enumerate(kept):
        want += [expected(number, record) for _, record in page]
        want.append(PageEnd(number, "people", len(page), None if number == len(kept) - 1
                            else str(number + 1)))
    want.append(EndOfStream())
    assert sent == want
    outcomes = [m for m in sent if isinstance(m, WriteItem | RecordFailed)]
    kinds = [kind for page in kept for kind, _ in page]
    for kind, outcome in zip(kinds, outcomes, strict=True):
        if kind == "good":
            assert isinstance(outcome, WriteItem), outcome
        elif kind == "bad":
            assert isinstance(outcome, RecordFailed), outcome
        if isinstance(outcome, RecordFailed):
            assert outcome.category in CATEGORIES, outcome
