"""`AttioAdapter` against answers of any shape: a typed value or a `CrmApiError`.

One scripted server on 127.0.0.1 serves the whole module; each example scripts the
answers of the requests one adapter call makes (a records query and the company query
it triggers, a webhook listing then the object lookup then the create, ...). Answers
follow Attio's documented shapes with parts missing, extra or wrongly typed, or are
JSON of any shape, bodies that are not JSON, error statuses and odd headers. The
properties, for every call the adapter makes:

* it returns a value of its declared type, or raises a `CrmApiError`: a 4xx/5xx is
  the error of its status, a 2xx that is not the documented shape a `CrmDecodeError`;
  never a raw `msgspec`, `KeyError`, `TypeError` or `AttributeError`;
* an answer without a `data` list is a `CrmDecodeError`, never an empty result: an
  empty page ends a listing, no person means no call note, no note means writing one
  again;
* a records answer that is a `data` list loses none of its records that have an id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec
import pytest
import pytest_asyncio
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from support.fuzz import (
    ANY_ATTIO_RECORD,
    JSON,
    NAMES,
    TEXT,
    UUIDS,
    Answer,
    ScriptedApi,
    answers,
    historical,
    record_id_of,
    shaped,
)

from crmsync.adapters.attio import AttioAdapter
from crmsync.adapters.base import CrmPage, CrmRecord, NoteInput
from crmsync.adapters.errors import (
    CrmApiError,
    CrmAuthError,
    CrmConflictError,
    CrmDecodeError,
    CrmNotFoundError,
    CrmRateLimitedError,
    CrmRejectedError,
    CrmServerError,
)
from crmsync.net.retry import RetryPolicy

pytestmark = pytest.mark.asyncio(loop_scope="module")

SETTINGS = settings(max_examples=150, deadline=None)
NOTE = NoteInput(crm_object="people", person_id="r1", title="Call", markdown="x")
MARKER = "crmsync:call:AC1"
HOOK_URL = "https://sync.example.com/webhooks/acme/crm"


@dataclass
class Env:
    api: ScriptedApi
    session: aiohttp.ClientSession

    def adapter(self) -> AttioAdapter:
        """A fresh adapter (its object-id and company caches empty) on the shared session."""
        return AttioAdapter(self.session, api_key="fuzz-key", base_url=self.api.url, timeout=5,
                            retry=RetryPolicy(max_retries=0))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env() -> AsyncIterator[Env]:
    async with ScriptedApi() as api, aiohttp.ClientSession() as session:
        yield Env(api, session)


# -- Attio's answers -------------------------------------------------------------------


def data_of(item: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`{"data": item}`, as documented or with parts of any shape."""
    return st.one_of(shaped({"data": item}, required=("data",), wild=False),
                     shaped({"data": item}, wild=True))


RECORDS = data_of(st.lists(ANY_ATTIO_RECORD | JSON, max_size=4))
COMPANIES = data_of(st.lists(
    shaped({"id": shaped({"record_id": UUIDS | TEXT}),
            "values": shaped({"name": historical(shaped({"value": NAMES}), True)})}),
    max_size=3,
))
RECORD = data_of(ANY_ATTIO_RECORD)
NOTE_CREATED = data_of(shaped({"id": shaped({"note_id": UUIDS | TEXT, "workspace_id": UUIDS})}))
CONTENT = st.sampled_from([MARKER, f"call {MARKER}\n", f"{MARKER}-2", "nothing"]) | TEXT
NOTES = data_of(st.lists(shaped({
    "id": shaped({"note_id": UUIDS | TEXT}),
    "content_markdown": CONTENT, "content_plaintext": CONTENT,
}), max_size=3))
OBJECT = data_of(shaped({"id": shaped({"object_id": UUIDS | TEXT})}))
HOOKS = data_of(st.lists(shaped({
    "id": shaped({"webhook_id": UUIDS | TEXT}),
    "target_url": st.sampled_from([HOOK_URL, "https://elsewhere.example.com"]) | TEXT,
}), max_size=3))
HOOK_CREATED = data_of(shaped({"id": shaped({"webhook_id": UUIDS | TEXT}), "secret": TEXT}))


# -- the calls -------------------------------------------------------------------------


class Call:
    """One adapter call: how to make it, the JSON each of its requests in turn is sent,
    and what it may return. (Not a dataclass: Hypothesis would print its strategies.)"""

    def __init__(
        self,
        name: str,
        make: Callable[[AttioAdapter], Awaitable[Any]],
        script: tuple[st.SearchStrategy[Any], ...],
        returns: Callable[[Any], bool],
    ) -> None:
        self.name = name
        self.make = make
        self.script = script
        self.returns = returns

    def __repr__(self) -> str:  # how a failing example names it
        return f"BY_NAME[{self.name!r}]"


def _strs(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _records(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(r, CrmRecord) for r in value)


CALLS = [
    Call("fetch_page", lambda a: a.fetch_page("people", None, 3), (RECORDS, COMPANIES),
         lambda v: isinstance(v, CrmPage) and _records(v.records)),
    Call("fetch_page_later", lambda a: a.fetch_page("people", "40", 2), (RECORDS, COMPANIES),
         lambda v: isinstance(v, CrmPage) and _records(v.records)),
    Call("fetch_by_ids", lambda a: a.fetch_by_ids("people", ["r1", "r2"]), (RECORDS, COMPANIES),
         _records),
    Call("fetch_one", lambda a: a.fetch_one("people", "r1"), (RECORD, COMPANIES),
         lambda v: v is None or isinstance(v, CrmRecord)),
    Call("find_people_by_phone", lambda a: a.find_people_by_phone("+14155552671"), (RECORDS,),
         _strs),
    Call("write_note", lambda a: a.write_note(NOTE), (NOTE_CREATED,),
         lambda v: isinstance(v, str)),
    Call("find_note_ids", lambda a: a.find_note_ids("people", "r1", MARKER), (NOTES,), _strs),
    Call("delete_note", lambda a: a.delete_note("N1"), (JSON,), lambda v: v is None),
    Call("object_id", lambda a: a.object_id("people"), (OBJECT,), lambda v: isinstance(v, str)),
    Call("ensure_webhook", lambda a: a.ensure_webhook(HOOK_URL), (HOOKS, OBJECT, HOOK_CREATED),
         lambda v: isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
         and (v[1] is None or isinstance(v[1], str))),
]
BY_NAME = {call.name: call for call in CALLS}

STATUS_KINDS: dict[int, type[CrmApiError]] = {
    401: CrmAuthError, 403: CrmAuthError, 404: CrmNotFoundError, 409: CrmConflictError,
    429: CrmRateLimitedError,
}
#: calls for which a 404 is an answer, not an error
NOT_FOUND_IS_NONE = {"fetch_one", "delete_note"}


def kind_of(status: int) -> type[CrmApiError]:
    if status >= 500:
        return CrmServerError
    return STATUS_KINDS.get(status, CrmRejectedError)


def scripted(call: Call) -> st.SearchStrategy[tuple[Call, tuple[Answer, ...]]]:
    return st.tuples(st.just(call), st.tuples(*(answers(body) for body in call.script)))


def data_list(answer: Answer) -> list[Any] | None:
    """The `data` list of a 2xx answer, or None when it has none."""
    if answer.status >= 300:
        return None
    try:
        body = msgspec.json.decode(answer.body)
    except msgspec.DecodeError:
        return None
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, list) else None


def check(call: Call, script: tuple[Answer, ...], served: int, got: Any) -> None:
    """`got` (a value or a `CrmApiError`) is what `call` may give for the answers served."""
    # Once the script is used up, the server answers `{"data": []}` (`Answer()`).
    answered = script[:served] + (Answer(),) * (served - len(script))
    assert answered, f"{call.name} made no request"
    if isinstance(got, CrmApiError):
        if isinstance(got, CrmDecodeError):
            assert answered[-1].status < 300, got
        else:
            assert isinstance(got, kind_of(answered[-1].status)), (got, answered[-1])
        return
    assert call.returns(got), got
    assert all(a.status < 300 or (call.name in NOT_FOUND_IS_NONE and a.status == 404)
               for a in answered), (answered, got)
    first = answered[0]
    if call.name in ("fetch_page", "fetch_page_later", "fetch_by_ids",
                     "find_people_by_phone"):
        data = data_list(first)
        assert data is not None, "an answer without a data list was taken for a result"
        ids = [i for r in data if (i := record_id_of(r)) is not None]
        found = got.records if isinstance(got, CrmPage) else got
        assert [r if isinstance(r, str) else r.record_id for r in found] == ids
    if call.name == "find_note_ids":
        assert data_list(first) is not None, "an answer without a data list found no notes"


async def prove(env: Env, call: Call, script: tuple[Answer, ...]) -> None:
    env.api.play(*script)
    try:
        got = await call.make(env.adapter())
    except CrmApiError as error:
        got = error
    event(f"{call.name}: {type(got).__name__ if isinstance(got, CrmApiError) else 'value'}")
    check(call, script, len(env.api.requests), got)


def calls(names: list[str]) -> st.SearchStrategy[tuple[Call, tuple[Answer, ...]]]:
    return st.sampled_from([BY_NAME[n] for n in names]).flatmap(scripted)


@SETTINGS
@given(call=calls(["fetch_page", "fetch_page_later", "fetch_by_ids", "fetch_one",
                   "find_people_by_phone"]))
# `values` a list: the company lookup called .get on it (AttributeError).
@example(call=(BY_NAME["fetch_page"], (Answer(body=b'{"data": [{"id": {"record_id": "r1"},'
                                             b' "values": []}]}'),)))
# `id` a string: `_to_records` called .get on it (AttributeError).
@example(call=(BY_NAME["fetch_by_ids"], (Answer(body=b'{"data": [{"id": "r1"}]}'),)))
# No `data` list: taken for an empty page (a listing ended early, no person found).
@example(call=(BY_NAME["fetch_page"], (Answer(body=b'{"records": []}'),)))
@example(call=(BY_NAME["find_people_by_phone"], (Answer(body=b'{"data": {"id": 1}}'),)))
# An `id` object without `record_id` in a phone lookup (KeyError).
@example(call=(BY_NAME["find_people_by_phone"], (Answer(body=b'{"data": [{"id": {}}]}'),)))
# A company answer without a `data` list blanked every company name of the page.
@example(call=(BY_NAME["fetch_page"], (
    Answer(body=b'{"data": [{"id": {"record_id": "r1"}, "values": {"company": '
                b'[{"target_record_id": "c1"}]}}]}'),
    Answer(body=b'{"error": "oops"}'),
)))
async def test_record_reads_return_records_or_crm_errors(
    call: tuple[Call, tuple[Answer, ...]], env: Env
) -> None:
    await prove(env, *call)


@SETTINGS
@given(call=calls(["write_note", "find_note_ids", "delete_note", "object_id",
                   "ensure_webhook"]))
# A note answer without `data.id.note_id` (TypeError/KeyError), or a number there.
@example(call=(BY_NAME["write_note"], (Answer(body=b'{"data": null}'),)))
@example(call=(BY_NAME["write_note"], (Answer(body=b'{"data": {"id": {"note_id": 5}}}'),)))
# A notes answer that is a list, not an object: taken for "no note".
@example(call=(BY_NAME["find_note_ids"], (Answer(body=b"[]"),)))
# A webhook listing whose `data` is a number (TypeError), or whose answer is a list.
@example(call=(BY_NAME["ensure_webhook"], (Answer(body=b'{"data": 5}'),)))
@example(call=(BY_NAME["ensure_webhook"], (Answer(body=b"[1]"),)))
# Our webhook listed without an id object (TypeError).
@example(call=(BY_NAME["ensure_webhook"], (Answer(body=msgspec.json.encode(
    {"data": [{"target_url": HOOK_URL, "id": "w1"}]})),)))
# A created webhook whose secret is not a string.
@example(call=(BY_NAME["ensure_webhook"], (
    Answer(body=b'{"data": []}'),
    Answer(body=b'{"data": {"id": {"object_id": "o1"}}}'),
    Answer(body=b'{"data": {"id": {"webhook_id": "w1"}, "secret": 5}}'),
)))
async def test_note_and_webhook_calls_return_typed_values_or_crm_errors(
    call: tuple[Call, tuple[Answer, ...]], env: Env
) -> None:
    await prove(env, *call)
