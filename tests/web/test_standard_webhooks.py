"""Quo's 2026-03-30 webhooks (Standard Webhooks) on the real listener, beside legacy ones.

1. tenant `acme` (the `running_listener` of `test_listener.py`: 127.0.0.1, a real SQLite
   state database) has its legacy Quo key and two `whsec_` keys (two new-system
   webhooks, as during a migration or a key rotation)
2. deliveries signed with the `standardwebhooks` package arrive on /webhooks/acme/quo,
   beside legacy `openphone-signature` ones, correct or not
Result: a good delivery is stored with its delivery id and business key; a bad, stale
(more than 5 minutes either way), missing, malformed, repeated or over-long signature
is 401 with nothing stored, and the listener goes on serving; the same event through
two webhooks, the same occurrence through both systems, and a redelivered `webhook-id`
(even after its row was pruned) each leave one row, the repeats answered 200
`{"status": "duplicate"}` and counted; big verifications run off the loop; a source
that keeps failing is throttled.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import standardwebhooks.webhooks as sw
from web.test_listener import (
    QUO_KEY,
    TENANT,
    Listener,
    add_secret,
    counted,
    running_listener,
)

from crmsync.quo import envelope
from crmsync.quo.signature import HEADER as QUO_HEADER
from crmsync.quo.signature import sign as quo_sign
from crmsync.quo.standard_signature import MAX_ENTRIES
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.payloads_v2 import envelope as make_envelope
from crmsync.sim.quo.testing import SimApi
from crmsync.web.guard import IntakeGuard

KEY_A = "whsec_" + base64.b64encode(b"webhook-A-signing-key-0123456789").decode()
KEY_B = "whsec_" + base64.b64encode(b"webhook-B-signing-key-9876543210").decode()
UNKNOWN_KEY = "whsec_" + base64.b64encode(b"nobody-stored-this-key-000000000").decode()
CALLER = "+14155550123"
PATH = f"/webhooks/{TENANT}/quo"
MIB = 1024 * 1024


@pytest.fixture
async def listener(tmp_path: Path) -> AsyncIterator[Listener]:
    async with running_listener(tmp_path, guard=IntakeGuard(failures=10**6)) as box:
        await add_secret(box.store, "quo", "quo:2026-03-30:a", KEY_A)
        await add_secret(box.store, "quo", "quo:2026-03-30:b", KEY_B)
        yield box


@pytest.fixture
def sim() -> QuoSim:
    return QuoSim()


def sign(body: bytes, *, key: str = KEY_A, msg_id: str = "msg_1",
         at: float | None = None) -> dict[str, str]:
    """The headers Quo sends, made with the `standardwebhooks` package itself."""
    moment = int(time.time() if at is None else at)
    signature = sw.Webhook(key).sign(msg_id, datetime.fromtimestamp(moment, tz=UTC), body)
    return {"Content-Type": "application/json", "webhook-id": msg_id,
            "webhook-timestamp": str(moment), "webhook-signature": signature}


def sms_bodies(sim: QuoSim, text: str = "hello") -> tuple[bytes, bytes]:
    """One incoming SMS as the new system and as the legacy system deliver it."""
    message = sim.workspace.add_message(CALLER, text)
    resource, context, links = sim.payloads.message(message)
    event_id = sim.hook_ids.event()
    new = envelope_bytes(sim, "message.received", resource, context, links, event_id)
    legacy_object = sim.legacy_objects.legacy_object("message.received", resource, context)
    assert legacy_object is not None
    legacy = sim.build_event("message.received", legacy_object).body
    return new, legacy


def envelope_bytes(sim: QuoSim, event_type: str, resource: dict[str, Any],
                   context: dict[str, Any], links: dict[str, Any], event_id: str) -> bytes:
    return msgspec.json.encode(make_envelope(event_id, event_type, resource, context, links))


async def healthy(box: Listener) -> bool:
    status, _, _ = await box.get("/healthz")
    return status == 200


# -- the good path -------------------------------------------------------------------------


async def test_a_signed_delivery_is_stored_with_its_delivery_id_and_business_key(
    listener: Listener, sim: QuoSim
) -> None:
    body, _ = sms_bodies(sim)
    headers = sign(body, key=KEY_B, msg_id="msg_2xYz")
    before = counted("accepted", source="quo")
    assert await listener.post(PATH, body, headers) == (200, {"status": "accepted"})
    [row] = await listener.rows("quo")
    parsed = envelope.decode(body)
    assert (row.event_id, row.event_type, row.delivery_id, row.business_key) == (
        parsed.event_id, "message.received", "msg_2xYz", parsed.business_key
    )
    assert row.business_key is not None
    assert row.body == body  # the raw body, for the consumers' `envelope.decode`
    assert row.headers["webhook-id"] == "msg_2xYz"
    assert listener.target.wake.is_set()
    assert counted("accepted", source="quo") == before + 1


async def test_legacy_deliveries_still_verify_beside_new_keys(
    listener: Listener, sim: QuoSim
) -> None:
    _, legacy = sms_bodies(sim)
    status, answer = await listener.post(PATH, legacy, {QUO_HEADER: quo_sign(QUO_KEY, legacy)})
    assert (status, answer) == (200, {"status": "accepted"})
    [row] = await listener.rows("quo")
    assert (row.delivery_id, row.business_key) == (None, envelope.decode(legacy).business_key)


async def test_a_whsec_key_stored_a_moment_ago_verifies_at_once(
    listener: Listener, sim: QuoSim
) -> None:
    """The secrets cache was filled before the new webhook's key was stored."""
    body, _ = sms_bodies(sim)
    assert (await listener.post(PATH, body, sign(body, msg_id="msg_warm")))[0] == 200
    fresh = "whsec_" + base64.b64encode(b"created-just-now-0123456789abcde").decode()
    await add_secret(listener.store, "quo", "quo:2026-03-30:new", fresh)
    other, _ = sms_bodies(sim, "second")
    assert (await listener.post(PATH, other, sign(other, key=fresh, msg_id="msg_new")))[0] == 200


# -- refusals: 401, never 500, and the listener lives ---------------------------------------


def _bad(body: bytes, how: str) -> dict[str, str]:
    good = sign(body)
    entry = good["webhook-signature"]
    junk = "v1," + base64.b64encode(bytes(32)).decode()
    now = time.time()
    match how:
        case "other-key":
            return sign(body, key=UNKNOWN_KEY)
        case "legacy-key-as-whsec":
            return sign(body, key="whsec_" + QUO_KEY)
        case "stale-old":
            return sign(body, at=now - 301)
        case "stale-new":
            return sign(body, at=now + 301)
        case "stale-day":
            return sign(body, at=now - 86400)
        case "no-id" | "no-timestamp" | "no-signature":
            name = {"no-id": "webhook-id", "no-timestamp": "webhook-timestamp",
                    "no-signature": "webhook-signature"}[how]
            return {k: v for k, v in good.items() if k != name}
        case "empty-signature":
            return {**good, "webhook-signature": ""}
        case "no-comma":  # standardwebhooks 1.1 raised ValueError on this one
            return {**good, "webhook-signature": entry.replace(",", "")}
        case "v2-only":
            return {**good, "webhook-signature": entry.replace("v1,", "v2,")}
        case "not-base64":
            return {**good, "webhook-signature": "v1,@@@@"}
        case "float-timestamp":
            return {**good, "webhook-timestamp": good["webhook-timestamp"] + ".0"}
        case "text-timestamp":
            return {**good, "webhook-timestamp": "yesterday"}
        case "huge-timestamp":
            return {**good, "webhook-timestamp": "9" * 40}
        case "spaced-id":
            return {**good, "webhook-id": "msg 1"}
        case "long-id":
            return sign(body, msg_id="m" * 300)
        case "too-many-entries":
            return {**good, "webhook-signature": " ".join([junk] * MAX_ENTRIES + [entry])}
        case "over-long":
            return {**good, "webhook-signature": entry + " " * 2000 + entry}
        case "other-body":
            return sign(body + b" ")
    raise AssertionError(how)


BAD = [
    "other-key", "legacy-key-as-whsec", "stale-old", "stale-new", "stale-day", "no-id",
    "no-timestamp", "no-signature", "empty-signature", "no-comma", "v2-only", "not-base64",
    "float-timestamp", "text-timestamp", "huge-timestamp", "spaced-id", "long-id",
    "too-many-entries", "over-long", "other-body",
]


@pytest.mark.parametrize("how", BAD)
async def test_a_bad_stale_missing_or_malformed_signature_is_401_and_the_listener_lives(
    listener: Listener, sim: QuoSim, how: str
) -> None:
    body, _ = sms_bodies(sim)
    headers = _bad(body, how)
    if how == "no-id":  # no webhook-id: the legacy scheme, whose header is missing too
        assert "webhook-signature" in headers
    before = counted("bad_signature", source="quo")
    assert await listener.post(PATH, body, headers) == (401, {"error": "bad or missing signature"})
    assert await listener.rows() == []
    assert counted("bad_signature", source="quo") == before + 1
    assert await healthy(listener)
    good = sign(body, msg_id="msg_after")
    assert await listener.post(PATH, body, good) == (200, {"status": "accepted"})


async def raw_post(box: Listener, body: bytes, headers: list[tuple[str, str]]) -> int:
    """POST with these header lines as written (aiohttp's client merges repeats)."""
    host, port = box.base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    try:
        writer.write(
            f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
            f"Content-Length: {len(body)}\r\n{lines}\r\n".encode() + body
        )
        await writer.drain()
        async with asyncio.timeout(10):
            status_line = await reader.readline()
            await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_a_header_sent_twice_is_401(listener: Listener, sim: QuoSim, name: str) -> None:
    """Each Standard Webhooks header twice, both copies valid: refused, as Quo's SDK
    sample does ("Expected a single ... header value"); once, the same request is 200."""
    body, _ = sms_bodies(sim)
    headers = list(sign(body).items())
    twice = [*headers, (name.title(), dict(headers)[name])]
    assert await raw_post(listener, body, twice) == 401
    assert await listener.rows() == []
    assert await raw_post(listener, body, headers) == 200


async def test_the_scheme_follows_the_webhook_id_header(listener: Listener, sim: QuoSim) -> None:
    """A `webhook-id` request is verified the new way only: a valid legacy signature
    beside it does not help; a legacy-signed request without it verifies as before."""
    body, legacy = sms_bodies(sim)
    mixed = {"webhook-id": "msg_1", QUO_HEADER: quo_sign(QUO_KEY, body)}
    assert (await listener.post(PATH, body, mixed))[0] == 401
    only_new_keys = {QUO_HEADER: quo_sign(KEY_A.removeprefix("whsec_"), legacy)}
    assert (await listener.post(PATH, legacy, only_new_keys))[0] == 401  # not a legacy key
    assert (await listener.post(PATH, body, {}))[0] == 401
    assert await listener.rows() == []


# -- de-duplication ------------------------------------------------------------------------


async def test_the_same_event_through_two_webhooks_is_stored_once(
    listener: Listener, sim: QuoSim
) -> None:
    """Webhooks A and B both subscribe to the event: the same body (same event id)
    arrives as two deliveries, each with its own `webhook-id` and key."""
    body, _ = sms_bodies(sim)
    before = counted("duplicate", source="quo")
    first = await listener.post(PATH, body, sign(body, key=KEY_A, msg_id="msg_viaA"))
    second = await listener.post(PATH, body, sign(body, key=KEY_B, msg_id="msg_viaB"))
    assert (first, second) == ((200, {"status": "accepted"}), (200, {"status": "duplicate"}))
    [row] = await listener.rows("quo")
    assert row.delivery_id == "msg_viaA"
    assert counted("duplicate", source="quo") == before + 1
    for msg_id in ("msg_viaA", "msg_viaB"):
        assert await listener.store.inbox.has_delivery(TENANT, "quo", msg_id)


@pytest.mark.parametrize("legacy_first", [True, False])
async def test_the_same_occurrence_through_legacy_and_new_is_stored_once(
    listener: Listener, sim: QuoSim, legacy_first: bool
) -> None:
    """During a migration the legacy and the new webhook both deliver one SMS (two
    event ids, two formats): whichever arrives first is stored, the other is a
    duplicate."""
    new, legacy = sms_bodies(sim)
    sends = [(legacy, {QUO_HEADER: quo_sign(QUO_KEY, legacy)}), (new, sign(new))]
    if not legacy_first:
        sends.reverse()
    answers = [await listener.post(PATH, body, headers) for body, headers in sends]
    assert answers == [(200, {"status": "accepted"}), (200, {"status": "duplicate"})]
    [row] = await listener.rows("quo")
    assert row.body == sends[0][0]


async def test_a_later_sms_of_the_same_person_is_not_a_duplicate(
    listener: Listener, sim: QuoSim
) -> None:
    for n, text in enumerate(["one", "two", "three"]):
        body, _ = sms_bodies(sim, text)
        assert (await listener.post(PATH, body, sign(body, msg_id=f"msg_{n}")))[1] == {
            "status": "accepted"
        }
    assert len(await listener.rows("quo")) == 3


async def test_a_redelivered_webhook_id_is_a_duplicate_even_after_its_row_was_pruned(
    listener: Listener, sim: QuoSim
) -> None:
    """1. msg_1 is stored and processed 2. retention prunes its row (a retention shorter
    than Quo's 27 h retry schedule) 3. Quo retries msg_1, freshly signed (our 2xx was lost)
    Result: 3. is 200 duplicate and nothing is stored again."""
    body, _ = sms_bodies(sim)
    assert (await listener.post(PATH, body, sign(body)))[1] == {"status": "accepted"}
    [row] = await listener.rows("quo")
    store = listener.store
    await store.inbox.mark_processed(TENANT, row.id)
    assert await store.inbox.prune(TENANT, store.now() + 1) >= 1
    assert await listener.rows() == []
    retry = sign(body, at=time.time() + 5)
    assert await listener.post(PATH, body, retry) == (200, {"status": "duplicate"})
    assert await listener.rows() == []


async def test_the_simulators_own_deliveries_through_both_systems_leave_one_row(
    listener: Listener,
) -> None:
    """1. in the Quo simulator, one legacy webhook and two 2026-03-30 webhooks point at
    the listener (a migration in progress, plus a second new webhook); their keys are
    stored as crmsync stores them  2. an SMS arrives, a missed call, a voicemail
    3. each new-system delivery is retried once (the simulator re-signs it)
    Result: every delivery of every system got a 2xx, and the inbox holds one row per
    occurrence (three), not one per delivery (eight, then eleven)."""
    url = f"{listener.base}{PATH}"
    async with run_quo_simulator(config=QuoSimConfig(requests_per_second=10_000, seed=7)) as (
        sim, base_url,
    ):
        legacy_api = SimApi(listener.http, base_url, sim.api_key)  # .../v1
        new_api = SimApi(listener.http, base_url.removesuffix("/v1"), sim.api_key,
                         headers={"Quo-Api-Version": "2026-03-30"})
        events = ["message.received", "call.missed", "call.voicemail.completed"]
        made = await legacy_api.post(
            "/webhooks/messages", json={"url": url, "events": ["message.received"]}
        )
        assert made.status == 201, made.json
        await add_secret(listener.store, "quo", "quo:messages:9", made.json["data"]["key"])
        for n in range(2):
            made = await new_api.post("/webhooks", json={"url": url, "events": events})
            assert made.status == 201, made.json
            assert made.json["data"]["key"].startswith("whsec_")
            await add_secret(listener.store, "quo", f"quo:2026-03-30:{n}",
                             made.json["data"]["key"])
        sms = await sim.sms(CALLER, "hello through both systems")
        missed = await sim.call_missed(CALLER)
        voicemail = await sim.voicemail(missed.resource, transcript="call me", duration=9)
        publications = [sms, missed, voicemail]
        assert [len(p.deliveries) for p in publications] == [2, 2, 2]
        assert sms.legacy is not None
        assert all(p.ok for p in publications), [p.deliveries for p in publications]
        rows = await listener.rows("quo")
        assert len(rows) == 3
        for publication in publications:
            for delivery in publication.deliveries:
                assert await sim.hooks.attempt(delivery, "manual")
    rows = await listener.rows("quo")
    assert sorted(r.event_type for r in rows) == sorted(events)
    assert {r.event_id for r in rows} <= {p.event_id for p in publications} | {
        sms.legacy.id
    }


# -- hostile-input bounds, as for the legacy header ------------------------------------------


@contextmanager
def hmac_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """One entry per HMAC the `standardwebhooks` package computes: True if on the loop."""
    on_loop: list[bool] = []
    loop_thread = threading.current_thread()
    real = sw.hmac_data

    def counted_hmac(key: bytes, data: bytes) -> bytes:
        on_loop.append(threading.current_thread() is loop_thread)
        return real(key, data)

    monkeypatch.setattr(sw, "hmac_data", counted_hmac)
    yield on_loop


async def test_the_hmacs_of_a_big_delivery_run_off_the_event_loop(
    tmp_path: Path, sim: QuoSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1 MiB delivery, wrongly then correctly signed: every HMAC in a worker thread,
    one per stored `whsec_` key at most per verification (not per entry)."""
    async with running_listener(tmp_path, max_body=MIB) as box:
        await add_secret(box.store, "quo", "quo:2026-03-30:a", KEY_A)
        await add_secret(box.store, "quo", "quo:2026-03-30:b", KEY_B)
        small, _ = sms_bodies(sim)
        body = small[:-1] + b', "pad": "' + b"x" * (MIB - len(small) - 12) + b'"}'
        assert MIB - 100 < len(body) <= MIB
        junk = "v1," + base64.b64encode(bytes(32)).decode()
        wrong = {**sign(body), "webhook-signature": " ".join([junk] * MAX_ENTRIES)}
        with hmac_threads(monkeypatch) as hmacs:
            assert (await box.post(PATH, body, wrong))[0] == 401
        assert hmacs and not any(hmacs)
        assert len(hmacs) <= 2 * 2  # two keys, and once more after the miss re-read
        good = sign(body, key=KEY_B, msg_id="msg_big")
        with hmac_threads(monkeypatch) as hmacs:
            assert (await box.post(PATH, body, good))[0] == 200
        assert hmacs and not any(hmacs)


async def test_a_source_that_keeps_failing_new_signatures_is_throttled(
    tmp_path: Path, sim: QuoSim
) -> None:
    async with running_listener(tmp_path, guard=IntakeGuard(failures=3, period=60)) as box:
        await add_secret(box.store, "quo", "quo:2026-03-30:a", KEY_A)
        body, _ = sms_bodies(sim)
        statuses = [(await box.post(PATH, body, sign(body, key=UNKNOWN_KEY)))[0]
                    for _ in range(4)]
        assert statuses == [401, 401, 401, 429]
        assert (await box.post(PATH, body, sign(body)))[0] == 429  # even a good one, for now
        assert await box.rows() == []
        assert await healthy(box)


def test_hmac_is_the_packages_not_ours() -> None:
    """The verification path never computes an HMAC of its own (the package does)."""
    import crmsync.quo.standard_signature as module

    source = Path(module.__file__).read_text()
    assert "import hmac" not in source and "hmac.new" not in source
