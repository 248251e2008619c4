"""Hypothesis strategies and a scripted API server shared by the proof suites.

* `JSON`, `shaped`, `from_type`: JSON values of any shape, or of a documented shape
  (an object's keys, or a msgspec type's) with parts missing, extra or wrongly typed;
* `ANY_ATTIO_RECORD`, `good_attio_records`: Attio records, from well-formed with odd
  values (Unicode names, phones in any format, emails of any shape) to wrongly typed
  at every level; records are as a client reads them out of JSON (`as_received`:
  no tuples, no nan, integers within 64 bits);
* `answers`, `ScriptedApi`: HTTP answers of every kind (bodies of a shape, any JSON,
  not JSON; error statuses; odd headers) and a server on 127.0.0.1 that plays them.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec
import msgspec.inspect as mi
import phonenumbers
from aiohttp import web
from hypothesis import strategies as st

#: any Unicode a JSON document can carry (no lone surrogates)
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=24)

JSON_SCALARS: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
JSON: st.SearchStrategy[Any] = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)


def as_received(value: Any) -> Any:
    """`value` as a client reads it back out of its JSON encoding."""
    return msgspec.json.decode(msgspec.json.encode(value))


def sometimes_wrong(strategy: st.SearchStrategy[Any], wild: bool = True) -> st.SearchStrategy[Any]:
    """`wild`: `strategy`'s values, or a value of any JSON type in their place."""
    return st.one_of(strategy, JSON) if wild else strategy


def shaped(
    fields: dict[str, st.SearchStrategy[Any]],
    *,
    required: tuple[str, ...] = (),
    wild: bool = True,
) -> st.SearchStrategy[dict[str, Any]]:
    """An object with `fields` and unknown extras. When `wild`, only the `required` ones
    are always there, and any of them may have a value of the wrong type."""
    wrongly = {name: sometimes_wrong(s, wild) for name, s in fields.items()}
    if not wild:
        required = tuple(fields)
    return st.builds(
        lambda known, extra: {**extra, **known},
        st.fixed_dictionaries(
            {name: wrongly[name] for name in required},
            optional={name: s for name, s in wrongly.items() if name not in required},
        ),
        st.dictionaries(st.sampled_from(["extra", "attribute_type", "x"]) | TEXT, JSON,
                        max_size=1),
    )


# -- Attio values ---------------------------------------------------------------------

UUIDS = st.uuids().map(str)
# Odd names: blanks, zero-width and bidi characters, combining marks, CJK, emoji, NULs.
ODD_NAMES = st.sampled_from([
    "", " ", "\t\n", "\u200b", "\u00a0", "Žiga", "李小龍", "O'Brien", "\u202eevil", "Ada\x00",
    "Zoe\u0308", "X Æ A-12", "🙂", "a" * 300, "Ada Lovelace", "Novak", "Jean-Luc  Picard",
])
NAMES = st.one_of(ODD_NAMES, TEXT)


def _example_numbers() -> list[str]:
    """Valid numbers of many regions, in every format people type them in."""
    formats = [phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
               phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.RFC3966]
    numbers = []
    for region in ("US", "GB", "SI", "DE", "IN", "BR", "JP", "AU", "NG", "FR"):
        example = phonenumbers.example_number(region)
        assert example is not None
        numbers += [phonenumbers.format_number(example, f) for f in formats]
    return numbers


PHONES = st.one_of(
    st.sampled_from(_example_numbers()),
    st.from_regex(r"\A\+?[0-9 ()./-]{0,24}\Z"),
    st.sampled_from(["12", "+1 555", "call me", "+386 40 123 456", "040 123 456", "00000",
                     "+" + "9" * 40, "٠٤٠١٢٣٤٥٦", "+1 (415) 555-2671 ext. 7"]),
    TEXT,
)
COUNTRIES = st.one_of(
    st.sampled_from(["US", "SI", "GB", "DE", "si", "us", "", "XX", "ZZ", "001", "ß"]), TEXT
)
EMAILS = st.one_of(
    st.emails(),
    st.sampled_from(["@", "@acme.si", "a@", " ada@acme.si ", "no-at-sign", "a@b@c", "\t@\t"]),
    st.builds(lambda a, b: f"{a}@{b}", TEXT, TEXT),
    TEXT,
)
WEB_URLS = st.one_of(
    st.sampled_from([
        "https://app.attio.com/acme/person/0", "not a url", "http://[", "https://", "mailto:x",
        "https://app.attio.com/" + "x" * 300, "https://app.attio.com/a b", "javascript:1",
    ]),
    st.builds(lambda s: "https://app.attio.com/" + s, TEXT),
    TEXT,
)


def historical(payload: st.SearchStrategy[dict[str, Any]], wild: bool) -> st.SearchStrategy[Any]:
    """An attribute: a list of historical values (mostly current), or (`wild`) anything."""
    value = st.builds(
        lambda p, until: p | ({} if until is ... else {"active_until": until}),
        payload,
        st.one_of(st.just(...), st.none(), TEXT, JSON) if wild else st.one_of(
            st.just(...), st.none(), st.none(), st.none(), TEXT),
    )
    return sometimes_wrong(st.lists(value, max_size=3), wild)


def attributes(wild: bool) -> dict[str, st.SearchStrategy[Any]]:
    """A person's attributes; when `wild`, any part of them may be of the wrong type."""
    return {
        "name": historical(shaped(
            {"first_name": NAMES, "last_name": NAMES, "full_name": NAMES}, wild=wild), wild),
        "email_addresses": historical(shaped({"email_address": EMAILS}, wild=wild), wild),
        "phone_numbers": historical(shaped({
            "original_phone_number": PHONES, "phone_number": PHONES,
            "normalized_phone_number": PHONES, "country_code": COUNTRIES,
        }, wild=wild), wild),
        "job_title": historical(shaped({"value": NAMES}, wild=wild), wild),
        "company": historical(shaped({"target_record_id": UUIDS | TEXT,
                                      "target_object": st.just("companies")}, wild=wild), wild),
    }


RECORD_IDS = st.one_of(UUIDS, UUIDS, st.text(max_size=90), st.just(""), st.just("r" * 76))


def attio_records(
    record_id: st.SearchStrategy[Any] = RECORD_IDS, *, wild: bool = True
) -> st.SearchStrategy[Any]:
    """An Attio record as the API could send it: odd values everywhere, and when `wild`
    any part of any shape."""
    return shaped({
        "id": shaped({"record_id": record_id, "object_id": UUIDS, "workspace_id": UUIDS},
                     required=("record_id",), wild=wild),
        "values": shaped(attributes(wild), wild=wild),
        "web_url": WEB_URLS,
        "created_at": TEXT,
    }, wild=wild).map(as_received)


#: records of every shape: half with the documented structure, half with anything
ANY_ATTIO_RECORD = st.one_of(attio_records(wild=False), attio_records(wild=True))


@st.composite
def good_attio_records(draw: st.DrawFn) -> dict[str, Any]:
    """A record that must become a contact: a record id and a current first name that
    is not blank; everything else is as odd as `attio_records`."""
    record: dict[str, Any] = draw(ANY_ATTIO_RECORD)  # `shaped`: always an object
    first = draw(st.builds(str.__add__, st.characters(codec="utf-8").filter(
        lambda c: not c.isspace()), NAMES))
    record["id"] = {"record_id": draw(UUIDS)}
    values = record.get("values")
    record["values"] = values = values if isinstance(values, dict) else {}
    # Earlier names follow it, closed (`active_until` set), so they must not count.
    closed = st.fixed_dictionaries({"first_name": NAMES, "active_until": TEXT})
    values["name"] = [{"first_name": first, "active_until": None},
                      *draw(st.lists(closed, max_size=2))]
    return record


def record_id_of(raw: Any) -> str | None:
    """The record id the adapter would read, or None."""
    ident = raw.get("id") if isinstance(raw, dict) else None
    record_id = ident.get("record_id") if isinstance(ident, dict) else None
    return record_id if isinstance(record_id, str) else None


# -- API answers -------------------------------------------------------------------------


def from_type(t: mi.Type, *, wild: bool) -> st.SearchStrategy[Any]:
    """JSON values of the shape msgspec type `t` describes; when `wild`, any field may
    be missing or of the wrong type, and lists may hold anything."""
    match t:
        case mi.StructType(fields=fields):
            return shaped(
                {f.encode_name: from_type(f.type, wild=wild) for f in fields},
                required=tuple(f.encode_name for f in fields if f.required), wild=wild,
            )
        case mi.ListType(item_type=item) | mi.VarTupleType(item_type=item):
            return st.lists(sometimes_wrong(from_type(item, wild=wild), wild), max_size=2)
        case mi.UnionType(types=types):
            return st.one_of(*(from_type(member, wild=wild) for member in types))
        case mi.Metadata(type=inner):
            return from_type(inner, wild=wild)
        case mi.StrType():
            return TEXT
        case mi.IntType():
            return st.integers(min_value=-(2**63), max_value=2**63 - 1)
        case mi.FloatType():
            return st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10, 10)
        case mi.BoolType():
            return st.booleans()
        case mi.NoneType():
            return st.none()
        case mi.LiteralType(values=values):
            return st.sampled_from(values)
    return JSON


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of a scripted API."""

    status: int = 200
    body: bytes = b'{"data": []}'
    headers: tuple[tuple[str, str], ...] = ()


SUCCESS = st.sampled_from([200, 200, 200, 201])
ERRORS = st.sampled_from([400, 401, 403, 404, 409, 422, 429, 500, 502, 503])
NOT_JSON = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([b"", b"<html>Bad Gateway</html>", b"{", b'{"data": ', b"null", b"[]",
                     b'"data"', b"\xff\xfe{}", b'{"data": 1e999}', b"NaN"]),
)
# Header values a server can send (no CR/LF); Retry-After dates far off once overflowed.
HEADER_VALUES = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
    st.sampled_from(["1", "-1", "nan", "inf", "1e400", "Wed, 21 Oct 2015 07:28:00 GMT",
                     "1 Jan 10000000000 00:00:00"]),
)
HEADERS = st.lists(
    st.tuples(st.sampled_from(["Retry-After", "Content-Type", "X-Extra"]), HEADER_VALUES),
    max_size=2,
).map(tuple)


def answers(json_body: st.SearchStrategy[Any]) -> st.SearchStrategy[Answer]:
    """Answers of every kind: JSON bodies from `json_body` or of any shape, bodies that
    are not JSON, error statuses, odd headers."""
    body = st.one_of(
        json_body.map(msgspec.json.encode),
        json_body.map(msgspec.json.encode),
        JSON.map(msgspec.json.encode),
        NOT_JSON,
    )
    return st.one_of(
        st.builds(Answer, SUCCESS, body, HEADERS),
        st.builds(Answer, SUCCESS, body, HEADERS),
        st.builds(Answer, ERRORS, body, HEADERS),
    )


class ScriptedApi:
    """An HTTP server on 127.0.0.1 that answers from a script the test sets per example.

    Each request takes the next scripted `Answer`; once the script is used up, every
    request gets `after` (by default an empty list, which ends any paging).
    """

    def __init__(self) -> None:
        self.script: deque[Answer] = deque()
        self.after = Answer()
        self.requests: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    def play(self, *script: Answer, after: Answer | None = None) -> None:
        """Answer the next requests with `script`, then with `after`."""
        self.script = deque(script)
        self.after = after or Answer()
        self.requests = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path}")
        await request.read()
        answer = self.script.popleft() if self.script else self.after
        return web.Response(status=answer.status, body=answer.body,
                            headers=dict(answer.headers))

    async def __aenter__(self) -> ScriptedApi:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/v1"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
