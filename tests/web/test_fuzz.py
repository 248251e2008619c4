"""Fuzzing the webhook intake through the real aiohttp app (the `running_listener` of
`test_listener.py`: 127.0.0.1, a real SQLite inbox) with hypothesis.

Each example is one POST to `/webhooks/acme/crm` or `/webhooks/acme/quo`: an arbitrary
or nearly valid body, and a signature that is right, right in another form, wrong,
stale, garbled, arbitrary text or missing, with arbitrary extra headers; Quo's
2026-03-30 (Standard Webhooks) headers get their own test, signed with the
`standardwebhooks` package; another test writes the request bytes itself, so header
values may be any bytes aiohttp's client would refuse to send. A small model says
what the answer must be (200 accepted or duplicate, 400, 401) from what the test
signed and what the body holds.
Result, for every example: the answer is the model's (so never a 500), nothing is
logged as a handler bug, and the inbox holds exactly the correctly signed, well-formed
events, each once.

The listener's `IntakeGuard` gets a failure budget no fuzz run exhausts: throttling
(429) is tested in `test_hostile.py`, here every request must be verified.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import standardwebhooks.webhooks as sw
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from web.test_listener import CRM_SECRET, QUO_KEY, TENANT, Listener, add_secret, running_listener

from crmsync.quo.signature import HEADER as QUO_HEADER
from crmsync.quo.signature import MAX_ENTRIES
from crmsync.quo.signature import sign as quo_sign
from crmsync.quo.standard_signature import MAX_ENTRIES as STANDARD_MAX_ENTRIES
from crmsync.web.guard import IntakeGuard

#: examples per fuzz test: each takes a few ms (a request and an inbox read)
EXAMPLES = 300
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OTHER_QUO_KEY = "d3Jvbmcta2V5LXdyb25nLWtleQ=="
WHSEC_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_WHSEC_KEY = "whsec_" + OTHER_QUO_KEY


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    async with running_listener(tmp_path, guard=IntakeGuard(failures=10**9)) as box:
        await add_secret(box.store, "quo", "quo:2026-03-30", WHSEC_KEY)
        yield box


@pytest.fixture
def handler_bugs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """ERROR records of the app's middleware or aiohttp's server, live."""
    caplog.set_level(logging.ERROR)
    return caplog.records


# -- what the listener must answer ------------------------------------------------------


def compact(body: bytes) -> bytes | None:
    """`JSON.stringify(JSON.parse(body))`, written out here as Quo's Node sample does it."""
    try:
        return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        return None


def loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def storable(text: str) -> bool:
    """Text SQLite can store: no lone surrogates (JSON may spell them as escapes)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def quo_event_id(body: bytes) -> str | None:
    """The event id the listener must store for a correctly signed Quo body, or None if
    the body is malformed (400)."""
    envelope = loads(body)
    if not isinstance(envelope, dict):
        return None
    event_id, event_type = envelope.get("id"), envelope.get("type")
    if not (isinstance(event_id, str) and event_id.strip() and storable(event_id)):
        return None
    if not (isinstance(event_type, str) and event_type.strip() and storable(event_type)):
        return None
    return event_id


def attio_event_id(body: bytes) -> str | None:
    payload = loads(body)
    events = payload.get("events") if isinstance(payload, dict) else None
    if not isinstance(events, list) or not events:
        return None
    if not all(isinstance(e, dict) and isinstance(e.get("id"), dict) for e in events):
        return None
    if not storable(str(events[0].get("event_type", ""))):
        return None
    return hashlib.sha256(body).hexdigest()


# -- strategies -------------------------------------------------------------------------

header_value = st.text(st.characters(codec="utf-8", exclude_categories=("Cc",)), max_size=200)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=12,
)
quo_envelope = st.fixed_dictionaries(
    {"id": st.one_of(st.text(min_size=1, max_size=12), st.text(max_size=12), json_value),
     "type": st.one_of(
        st.sampled_from(["message.received", "call.completed", " "]), json_value)},
    optional={"object": st.just("event"), "data": json_value},
)
attio_event = st.fixed_dictionaries(
    {"event_type": st.one_of(st.sampled_from(["record.updated", "record.created"]),
                             json_value),
     "id": st.one_of(st.fixed_dictionaries({"record_id": st.text(max_size=8)}), json_value)},
)
attio_payload = st.fixed_dictionaries(
    {"events": st.one_of(st.lists(attio_event, max_size=3), json_value)},
    optional={"webhook_id": st.text(max_size=8)},
)
#: bytes that JSON only spells as escapes (lone surrogates), or no JSON parser can nest
odd_json = st.sampled_from([
    b'{"id": "\\ud800", "type": "message.received"}',
    b'{"id": "EVx", "type": "\\udfff"}',
    b'{"events": [{"event_type": "\\ud800", "id": {}}]}',
    b"[" * 3000, b'{"a":[' * 600,  # nested 3000 and 1200 deep, under the 4 KiB cap
])


#: well-formed events with unique-ish ids (so the accepting path gets examples too)
valid_quo = st.builds(
    lambda event_id, event_type: json.dumps(
        {"id": f"EV{event_id}", "type": event_type, "object": "event"}).encode(),
    st.text(max_size=16), st.sampled_from(["message.received", "call.completed"]),
)
valid_attio = st.builds(
    lambda record_id, extra: json.dumps({"events": [{
        "event_type": "record.updated", "id": {"record_id": record_id}, "extra": extra,
    }]}).encode(),
    st.text(max_size=16), json_value,
)


def bodies(envelope: st.SearchStrategy[Any], valid: st.SearchStrategy[bytes],
           ) -> st.SearchStrategy[bytes]:
    return st.one_of(
        valid,
        st.binary(max_size=400),
        envelope.map(lambda v: json.dumps(v).encode()),
        envelope.map(lambda v: json.dumps(v, indent=2, ensure_ascii=False).encode()),
        json_value.map(lambda v: json.dumps(v).encode()),
        odd_json,
    )


extra_headers = st.dictionaries(
    st.sampled_from(["X-Extra", "Idempotency-Key", "webhook-id", "Content-Type", "User-Agent"]),
    header_value, max_size=3,
)


class Model:
    """What the inbox must hold: every (source, event_id) the model accepted."""

    def __init__(self) -> None:
        self.stored: set[tuple[str, str]] = set()

    def answer(self, source: str, event_id: str | None, signed: bool) -> tuple[int, Any]:
        if not signed:
            return 401, {"error": "bad or missing signature"}
        if event_id is None:
            return 400, None  # the message says why; any text will do
        if (source, event_id) in self.stored:
            return 200, {"status": "duplicate"}
        self.stored.add((source, event_id))
        return 200, {"status": "accepted"}

    async def check_inbox(self, box: Listener) -> None:
        rows = await box.rows()
        assert len(rows) == len(self.stored)
        assert {(r.source, r.event_id) for r in rows} == self.stored


async def check(
    box: Listener, model: Model, bugs: list[logging.LogRecord], source: str,
    body: bytes, headers: dict[str, str], expected: tuple[int, Any],
) -> None:
    status, answer = await box.post(f"/webhooks/{TENANT}/{source}", body, headers)
    event(f"{status} {answer.get('status', '') if isinstance(answer, dict) else ''}".strip())
    assert bugs == []
    want_status, want_answer = expected
    assert status == want_status, (status, answer)
    if want_answer is not None:
        assert answer == want_answer
    await model.check_inbox(box)


# -- the tests --------------------------------------------------------------------------


@FUZZ
@given(
    body=bodies(quo_envelope, valid_quo),
    # Correctly signed forms twice as often: the accepting path needs examples too.
    how=st.sampled_from(["raw", "raw", "compact", "among-junk", "among-junk", "too-many",
                         "other-key", "stale", "short-digest", "text", "missing"]),
    text=header_value,
    extra=extra_headers,
)
async def test_fuzz_quo_intake_answers_4xx_or_stores_only_signed_events(
    listener: Listener, handler_bugs: list[logging.LogRecord],
    body: bytes, how: str, text: str, extra: dict[str, str],
) -> None:
    model = listener.__dict__.setdefault("model", Model())
    now_ms = int(time.time() * 1000)
    valid = quo_sign(QUO_KEY, body)
    junk = f"hmac;1;{now_ms};{'A' * 43}="
    header: str | None = {
        "raw": valid,
        "compact": quo_sign(QUO_KEY, compact(body) or b"not json: no compact form"),
        "among-junk": ",".join([junk, text.replace(",", ""), valid]),
        "too-many": ",".join([junk] * MAX_ENTRIES + [valid]),
        "other-key": quo_sign(OTHER_QUO_KEY, body),
        "stale": quo_sign(QUO_KEY, body, now_ms - 3_600_000),
        "short-digest": f"hmac;1;{now_ms};AAAA",
        "text": text,
        "missing": None,
    }[how]
    headers = {k: v for k, v in extra.items() if k.lower() != QUO_HEADER}
    if header is not None:
        headers[QUO_HEADER] = header
    signed = how in ("raw", "among-junk") or (how == "compact" and compact(body) is not None)
    # A `webhook-id` header routes the request to the 2026-03-30 scheme, which it fails.
    signed = signed and "webhook-id" not in {k.lower() for k in headers}
    expected = model.answer("quo", quo_event_id(body), signed)
    await check(listener, model, handler_bugs, "quo", body, headers, expected)


#: the SMS whose business key repeats (a legacy twin), at instants of which the first
#: two are one moment spelled two ways
TWIN = "AC-twin"
INSTANTS = ["2026-04-13T12:00:00.000Z", "2026-04-13T14:00:00+02:00", "2026-04-13T12:00:01Z"]
FRESH = itertools.count()


def new_envelope(message_id: str, created: str) -> bytes:
    return json.dumps({
        "id": f"EV{next(FRESH)}", "apiVersion": "2026-03-30", "type": "message.received",
        "createdAt": created,
        "data": {"resource": {"id": message_id, "createdAt": created}, "context": {},
                 "links": {"quo": None}},
    }).encode()


def occurrence(body: bytes) -> tuple[str, str, datetime] | None:
    """The model's business key: a `message.received` of one message at one instant."""
    envelope = loads(body)
    try:
        resource = envelope["data"]["resource"]
        return (envelope["type"], resource["id"], datetime.fromisoformat(resource["createdAt"]))
    except (TypeError, KeyError, ValueError):
        return None


#: how far outside the signature tolerance (300 s) the stale examples are
STALE = 360


def standard_headers(body: bytes, msg_id: str, *, key: str = WHSEC_KEY,
                     offset: int = 0) -> dict[str, str]:
    moment = int(time.time()) + offset
    signature = sw.Webhook(key).sign(msg_id, datetime.fromtimestamp(moment, tz=UTC), body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(moment),
            "webhook-signature": signature}


class StandardModel(Model):
    """`Model` plus the delivery ids and business keys the inbox de-duplicates on."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: set[str] = set()
        self.occurrences: set[tuple[str, str, datetime]] = set()

    def answer_delivery(self, body: bytes, msg_id: str, signed: bool) -> tuple[int, Any]:
        event_id = quo_event_id(body)
        if not signed:
            return 401, {"error": "bad or missing signature"}
        if event_id is None:
            return 400, None
        seen = msg_id in self.deliveries
        self.deliveries.add(msg_id)
        key = occurrence(body)
        if seen or ("quo", event_id) in self.stored or key in self.occurrences:
            return 200, {"status": "duplicate"}
        self.stored.add(("quo", event_id))
        if key is not None:
            self.occurrences.add(key)
        return 200, {"status": "accepted"}


@FUZZ
@given(
    # sampled_from favours its first element: fresh ids most of the time (ids come from a
    # counter: hypothesis would repeat its favourite values).
    kind=st.sampled_from(["fresh", "fresh", "twin", "junk"]),
    created=st.sampled_from(INSTANTS),
    junk=bodies(quo_envelope, valid_quo),
    delivery=st.sampled_from(["fresh", "fresh", "retry"]),
    how=st.sampled_from([
        "valid", "valid", "among-junk", "other-key", "stale-old", "stale-new", "too-many",
        "text-signature", "text-timestamp", "text-id", "no-signature", "no-timestamp",
    ]),
    text=header_value,
    extra=extra_headers,
)
async def test_fuzz_standard_webhooks_intake_answers_4xx_or_stores_each_occurrence_once(
    listener: Listener, handler_bugs: list[logging.LogRecord], kind: str, created: str,
    junk: bytes, delivery: str, how: str, text: str, extra: dict[str, str],
) -> None:
    """2026-03-30 deliveries: right (alone or among junk entries), wrong key, stale
    either way, over the entry cap, or with any text in one header; delivery ids repeat
    now and then (Quo's retries), and so do business keys (another event id for the
    same SMS: the legacy twin). The model says 401, 400, accepted or duplicate."""
    model = listener.__dict__.setdefault("standard_model", StandardModel())
    body = {"fresh": lambda: new_envelope(f"AC{next(FRESH)}", created),
            "twin": lambda: new_envelope(TWIN, created), "junk": lambda: junk}[kind]()
    msg_id = "msg_retried" if delivery == "retry" else f"msg_{next(FRESH)}"
    headers = standard_headers(body, msg_id)
    wrong = "v1," + "A" * 43 + "="
    match how:
        case "among-junk":
            headers["webhook-signature"] = f"{wrong} v1a,xyz {headers['webhook-signature']}"
        case "other-key":
            headers = standard_headers(body, msg_id, key=OTHER_WHSEC_KEY)
        case "stale-old" | "stale-new":
            # A minute past the 300 s tolerance: a loaded machine may take seconds
            # between signing here and verifying there (at 301 s a +301 s timestamp
            # became valid after 1 s and the delivery was accepted: a flaky example).
            headers = standard_headers(body, msg_id, offset=-STALE if how == "stale-old" else STALE)
        case "too-many":
            entries = [wrong] * STANDARD_MAX_ENTRIES + [headers["webhook-signature"]]
            headers["webhook-signature"] = " ".join(entries)
        case "text-signature" | "text-timestamp" | "text-id":
            headers[f"webhook-{how.removeprefix('text-')}"] = text
        case "no-signature" | "no-timestamp":
            del headers[f"webhook-{how.removeprefix('no-')}"]
    merged = {k: v for k, v in extra.items() if k.lower() != "webhook-id"} | headers
    # A text header still verifies if it is the right value (rare), e.g. the same id.
    sent = {k.lower(): v.strip() for k, v in merged.items()}
    signed = how in ("valid", "among-junk") or (
        how.startswith("text-") and sent[f"webhook-{how.removeprefix('text-')}"] == (
            standard_headers(body, msg_id)[f"webhook-{how.removeprefix('text-')}"]
        )
    )
    expected = model.answer_delivery(body, msg_id, signed)
    await check(listener, model, handler_bugs, "quo", body, merged, expected)


@FUZZ
@given(
    body=bodies(attio_payload, valid_attio),
    how=st.sampled_from(["hex", "hex", "upper", "x-attio", "other-secret", "text", "missing"]),
    text=header_value,
    extra=extra_headers,
)
async def test_fuzz_crm_intake_answers_4xx_or_stores_only_signed_events(
    listener: Listener, handler_bugs: list[logging.LogRecord],
    body: bytes, how: str, text: str, extra: dict[str, str],
) -> None:
    model = listener.__dict__.setdefault("model", Model())
    digest = hmac.new(CRM_SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {k: v for k, v in extra.items() if "attio" not in k.lower()}
    if how == "hex":
        headers["Attio-Signature"] = digest
    elif how == "upper":
        headers["Attio-Signature"] = digest.upper()
    elif how == "x-attio":
        headers["X-Attio-Signature"] = digest
    elif how == "other-secret":
        headers["Attio-Signature"] = hmac.new(b"other", body, hashlib.sha256).hexdigest()
    elif how == "text":
        headers["Attio-Signature"] = text
    signed = how in ("hex", "upper", "x-attio")
    expected = model.answer("crm", attio_event_id(body), signed)
    await check(listener, model, handler_bugs, "crm", body, headers, expected)


@FUZZ
@given(
    source=st.sampled_from(["crm", "quo"]),
    name=st.sampled_from([b"Attio-Signature", b"X-Attio-Signature", QUO_HEADER.encode(),
                          b"X-Extra"]),
    value=st.binary(max_size=200).map(
        lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")
    ),
    body=st.binary(max_size=200),
)
async def test_fuzz_raw_header_bytes_never_get_a_5xx(
    listener: Listener, handler_bugs: list[logging.LogRecord],
    source: str, name: bytes, value: bytes, body: bytes,
) -> None:
    """Header values as bytes no client library would send (obs-text, control bytes):
    aiohttp's parser may refuse the request (400) or pass it on; either way a 4xx, and
    nothing is stored (none of these is signed)."""
    host, port = listener.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"POST /webhooks/" + TENANT.encode() + b"/" + source.encode() + b" HTTP/1.1\r\n"
            b"Host: " + host.encode() + b"\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n"
            + name + b": " + value + b"\r\n\r\n" + body
        )
        await writer.drain()
        async with asyncio.timeout(10):
            status_line = await reader.readline()
            await reader.read()  # until the server closes
    finally:
        writer.close()
        await writer.wait_closed()
    status = int(status_line.split()[1])
    event(str(status))
    assert 400 <= status < 500, status_line
    assert handler_bugs == []
    assert await listener.rows() == []
