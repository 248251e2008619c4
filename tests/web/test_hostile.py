"""The webhook listener under hostile input, served for real on 127.0.0.1 with a real
SQLite state database (the `running_listener` of `test_listener.py`).

1. tenant `acme` has one CRM secret and eight Quo webhook keys in the state database
2. requests nobody signed arrive: a 1 MiB body with a 300-entry `openphone-signature`,
   the costliest header that is still examined, deeply nested JSON, a non-ASCII
   `Attio-Signature`, a replayed Attio capture with a new `Idempotency-Key`, a flood
3. each answer, the inbox, the loop's slow callbacks, the threads the HMACs ran on and
   the reads of the secrets are checked
Result: every request is a 4xx (401, 429 with `Retry-After` for a source that keeps
failing), never a 500; nothing is stored; the loop is never held for long (big
verifications run in worker threads); the secrets are read at most once per cache
lifetime however many signatures fail; /readyz and /healthz stay prompt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from web.test_listener import (
    QUO_KEY,
    TENANT,
    Listener,
    add_secret,
    attio_body,
    attio_headers,
    counted,
    quo_body,
    running_listener,
)

from crmsync.adapters.base import WebhookSignatureError
from crmsync.quo import signature
from crmsync.quo.signature import HEADER as QUO_HEADER
from crmsync.quo.signature import MAX_ENTRIES
from crmsync.quo.signature import sign as quo_sign
from crmsync.sim.quo.testing import wait_until
from crmsync.store import Store
from crmsync.web.guard import FAILURES_PER_SOURCE
from crmsync.web.targets import SECRETS_TTL_SECONDS, WebhookTarget

MIB = 1024 * 1024
KEYS = 8
#: a hostile request used to hold the loop ~3 s here; anything near this is a regression
MAX_LOOP_BLOCK_MS = 100.0


# -- harness ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def hostile_listener(tmp_path: Path) -> AsyncIterator[Listener]:
    """A listener taking 1 MiB bodies, with `KEYS` Quo keys (QUO_KEY among them)."""
    async with running_listener(tmp_path, max_body=MIB) as box:
        for n in range(KEYS - 1):
            await add_secret(box.store, "quo", f"quo:extra:{n}", random_key())
        yield box


@pytest.fixture
async def hostile(tmp_path: Path) -> AsyncIterator[Listener]:
    async with hostile_listener(tmp_path) as box:
        yield box


def random_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def big_envelope(size: int = MIB) -> bytes:
    """A Quo event of exactly `size` bytes, pretty-printed: its compact form differs."""
    event = json.loads(quo_body("EVbig"))
    event["pad"] = ""
    event["pad"] = "x" * (size - len(json.dumps(event, indent=2).encode()))
    body = json.dumps(event, indent=2).encode()
    assert len(body) == size
    return body


def entries(count: int, *, digest_bytes: int) -> list[str]:
    """`count` well-formed, fresh entries with distinct timestamps and wrong digests."""
    now_ms = int(time.time() * 1000)
    digest = base64.b64encode(b"\1" * digest_bytes).decode()
    return [f"hmac;1;{now_ms - i};{digest}" for i in range(count)]


class SlowCallbacks(logging.Handler):
    """The durations (ms) asyncio's debug mode logs for callbacks over the threshold."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.ms: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        seconds = record.args[-1] if isinstance(record.args, tuple) and record.args else None
        if record.getMessage().startswith("Executing ") and isinstance(seconds, float):
            self.ms.append(seconds * 1000)

    @property
    def longest(self) -> float:
        return max(self.ms, default=0.0)


@contextlib.contextmanager
def slow_callbacks(threshold: float = 0.005) -> Iterator[SlowCallbacks]:
    loop = asyncio.get_running_loop()
    assert loop.get_debug(), "the tests' loops run in debug mode (conftest)"
    handler = SlowCallbacks()
    logger = logging.getLogger("asyncio")
    before = loop.slow_callback_duration
    loop.slow_callback_duration = threshold
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        loop.slow_callback_duration = before


@contextlib.contextmanager
def hmac_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """One entry per HMAC `crmsync.quo.signature` starts: True if on the loop's thread."""
    on_loop: list[bool] = []
    loop_thread = threading.current_thread()

    def new(*args: Any, **kwargs: Any) -> Any:
        on_loop.append(threading.current_thread() is loop_thread)
        return hmac.new(*args, **kwargs)

    monkeypatch.setattr(
        signature, "hmac", SimpleNamespace(new=new, compare_digest=hmac.compare_digest)
    )
    yield on_loop


def counting_secret_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reads: list[str] = []
    real = store.subscriptions.secrets

    async def secrets(tenant_id: str, source: Any) -> list[str]:
        reads.append(source)
        return await real(tenant_id, source)

    monkeypatch.setattr(store.subscriptions, "secrets", secrets)
    return reads


async def post_quo(box: Listener, body: bytes, header: str) -> tuple[int, dict[str, Any]]:
    return await box.post(f"/webhooks/{TENANT}/quo", body, {QUO_HEADER: header})


# -- the cost of one request -------------------------------------------------------------


async def test_a_1_mib_request_with_300_signature_entries_is_refused_without_any_hmac(
    hostile: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. eight Quo keys are stored 2. an unsigned 1 MiB JSON body arrives with 300
    fresh entries (short digests: the most an 8 KiB header holds)
    Result: 401 without one HMAC, without reading the secrets, without holding the loop
    (this request held it ~3 s before the entries were capped)."""
    reads = counting_secret_reads(hostile.store, monkeypatch)
    header = ",".join(entries(300, digest_bytes=3))
    with hmac_threads(monkeypatch) as hmacs, slow_callbacks() as slow:
        status, answer = await post_quo(hostile, big_envelope(), header)
    assert (status, answer) == (401, {"error": "bad or missing signature"})
    assert (hmacs, reads) == ([], [])
    assert slow.longest < MAX_LOOP_BLOCK_MS, slow.ms
    assert await hostile.rows() == []


async def test_the_hmacs_of_a_1_mib_delivery_run_off_the_event_loop(
    hostile: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. eight keys 2. a 1 MiB body with the costliest header still examined: eight
    entries, distinct timestamps, full-length wrong digests 3. the same body correctly
    signed by the last of the keys among seven wrong entries
    Result: 401, then 200 with the event stored; no HMAC ran on the loop's thread, and
    the first request hashed each form at most once per key and entry."""
    body = big_envelope()
    header = ",".join(entries(MAX_ENTRIES, digest_bytes=32))
    with hmac_threads(monkeypatch) as hmacs:
        status, _ = await post_quo(hostile, body, header)
    assert status == 401
    assert hmacs and not any(hmacs)  # all in worker threads
    assert len(hmacs) <= 2 * KEYS * MAX_ENTRIES

    valid = quo_sign(QUO_KEY, body)
    with hmac_threads(monkeypatch) as hmacs:
        status, _ = await post_quo(hostile, body, ",".join([*entries(7, digest_bytes=32), valid]))
    assert status == 200
    assert hmacs and not any(hmacs)
    [row] = await hostile.rows("quo")
    assert row.body == body


async def test_the_body_is_parsed_as_json_at_most_once_per_delivery_and_not_after_a_raw_match(
    hostile: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. eight keys; a small pretty-printed event 2. a wrong signature, then the event
    signed over its raw bytes, then over its compact form
    Result: 401, 200, 200 (another event id); the compact form was computed once for the
    wrong signature (not once per key), never when the raw bytes matched."""
    parses: list[int] = []

    def loads(data: bytes, **kwargs: Any) -> Any:
        parses.append(len(data))
        return json.loads(data, **kwargs)

    monkeypatch.setattr(signature, "json", SimpleNamespace(loads=loads, dumps=json.dumps))

    def pretty(event_id: str) -> bytes:
        return json.dumps(json.loads(quo_body(event_id)), indent=2).encode()

    status, _ = await post_quo(hostile, pretty("EV1"), ",".join(entries(1, digest_bytes=32)))
    assert (status, len(parses)) == (401, 1)
    parses.clear()
    status, _ = await post_quo(hostile, pretty("EV2"), quo_sign(QUO_KEY, pretty("EV2")))
    assert (status, parses) == (200, [])
    compact = json.dumps(json.loads(pretty("EV3")), separators=(",", ":")).encode()
    status, _ = await post_quo(hostile, pretty("EV3"), quo_sign(QUO_KEY, compact))
    assert (status, len(parses)) == (200, 1)


@pytest.mark.parametrize(
    ("source", "signed", "expected"),
    [("quo", False, 401), ("quo", True, 400), ("crm", False, 401), ("crm", True, 400)],
)
async def test_a_deeply_nested_json_body_is_a_4xx_not_a_500(
    hostile: Listener, source: str, signed: bool, expected: int
) -> None:
    """A body of 100 000 `[`: json.loads raises RecursionError, which is no ValueError.
    Unsigned, the Quo verifier used to parse it for the compact form (a 500 for anyone)."""
    body = b"[" * 100_000
    if source == "quo":
        header = quo_sign(QUO_KEY, body) if signed else entries(1, digest_bytes=32)[0]
        status, answer = await post_quo(hostile, body, header)
    else:
        headers = attio_headers(body) if signed else attio_headers(body, secret="not-it")
        status, answer = await hostile.post(f"/webhooks/{TENANT}/crm", body, headers)
    assert status == expected, answer
    assert await hostile.rows() == []


# -- Attio ------------------------------------------------------------------------------


async def test_a_non_ascii_attio_signature_is_401_not_500(hostile: Listener) -> None:
    """hmac.compare_digest raises TypeError on a non-ASCII str: that was a 500."""
    body = attio_body()
    for given in ("é" * 64, "ab" * 31 + "\N{SNOWMAN}"):
        headers = {**attio_headers(body), "Attio-Signature": given}
        status, answer = await hostile.post(f"/webhooks/{TENANT}/crm", body, headers)
        assert (status, answer) == (401, {"error": "bad or missing signature"})
    assert await hostile.rows() == []


async def test_a_replayed_attio_capture_with_a_new_idempotency_key_adds_no_inbox_row(
    hostile: Listener,
) -> None:
    """1. a genuine Attio delivery is stored 2. someone who captured it sends the same
    signed body again with another `Idempotency-Key` (a header Attio does not sign)
    Result: the replay is a duplicate: one inbox row, keyed by the signed body's hash."""
    body = attio_body()
    assert (await hostile.post(f"/webhooks/{TENANT}/crm", body, attio_headers(body)))[0] == 200
    for key in ("replayed-1", "replayed-2", ""):
        status, answer = await hostile.post(
            f"/webhooks/{TENANT}/crm", body, attio_headers(body, key=key)
        )
        assert (status, answer) == (200, {"status": "duplicate"})
    [row] = await hostile.rows("crm")
    assert row.event_id == hashlib.sha256(body).hexdigest()


# -- throttling and the secrets cache ----------------------------------------------------


async def test_a_source_that_keeps_failing_gets_429_with_retry_after_and_others_do_not(
    hostile: Listener,
) -> None:
    """1. 127.0.0.1 sends `FAILURES_PER_SOURCE` badly signed requests (401 each)
    2. it sends one more, then a correctly signed one 3. 127.0.0.2 sends a bad one
    4. 127.0.0.1 waits for its bucket to drain (polled, with a deadline)
    Result: 2. is 429 with `Retry-After` for both (counted as `throttled`, nothing
    stored); 3. is a plain 401; 4. the signed event is then accepted."""
    body = quo_body("EVthrottle")
    bad = entries(1, digest_bytes=32)[0]
    before = counted("throttled", source="quo")
    for _ in range(FAILURES_PER_SOURCE):
        assert (await post_quo(hostile, body, bad))[0] == 401
    url = f"{hostile.base}/webhooks/{TENANT}/quo"
    for header in (bad, quo_sign(QUO_KEY, body)):
        async with hostile.http.post(url, data=body, headers={QUO_HEADER: header}) as resp:
            assert resp.status == 429
            retry_after = int(resp.headers["Retry-After"])
            assert 1 <= retry_after <= 60
    assert counted("throttled", source="quo") == before + 2
    assert await hostile.rows() == []

    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=other) as elsewhere, elsewhere.post(
        url, data=body, headers={QUO_HEADER: bad}
    ) as resp:
        assert resp.status == 401

    async def accepted() -> bool:
        status, _ = await post_quo(hostile, body, quo_sign(QUO_KEY, body))
        assert status in (200, 429)
        return status == 200

    await wait_until(accepted, within=retry_after * 5 + 5, interval=0.1,
                     message="the signed event accepted once the bucket drained")
    assert [r.event_id for r in await hostile.rows()] == ["EVthrottle"]


async def test_a_flood_of_bad_signatures_reads_the_secrets_at_most_once_per_ttl(
    hostile: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. a tenant's target on a clock the test moves 2. 50 badly signed Quo and CRM
    deliveries 3. the clock passes the cache lifetime; 50 more 4. a key is stored and
    a delivery signed with it arrives at once, then after another lifetime
    Result: one regular read and one miss-read per source and lifetime (each bad
    signature used to re-read the store); the new key verifies after the next read."""
    now = [1000.0]
    [tenant] = hostile.config.tenants
    target = WebhookTarget(tenant, adapter=hostile.target.adapter, store=hostile.store,
                           clock=lambda: now[0])
    reads = counting_secret_reads(hostile.store, monkeypatch)
    body = quo_body("EVttl")
    bad_quo = {QUO_HEADER: entries(1, digest_bytes=32)[0]}
    bad_crm = {"Attio-Signature": "0" * 64}

    async def flood() -> None:
        for _ in range(50):
            with pytest.raises(WebhookSignatureError):
                await target.verify_quo(bad_quo, body)
            with pytest.raises(WebhookSignatureError):
                await target.verify_crm(bad_crm, body)

    await flood()
    assert sorted(reads) == ["crm", "crm", "quo", "quo"]
    now[0] += SECRETS_TTL_SECONDS
    await flood()
    assert sorted(reads) == ["crm"] * 4 + ["quo"] * 4

    new_key = random_key()
    await add_secret(hostile.store, "quo", "quo:new", new_key)
    with pytest.raises(WebhookSignatureError):  # a miss re-read moments ago
        await target.verify_quo({QUO_HEADER: quo_sign(new_key, body)}, body)
    now[0] += SECRETS_TTL_SECONDS
    await target.verify_quo({QUO_HEADER: quo_sign(new_key, body)}, body)


# -- readiness under a flood ------------------------------------------------------------


@pytest.mark.slow
async def test_readyz_and_healthz_stay_prompt_under_a_flood_of_hostile_requests(
    hostile: Listener,
) -> None:
    """1. 50 hostile requests a second (1 MiB, 300 entries) for 5 s from one address
    2. /readyz and /healthz probed every 100 ms meanwhile (bench/hostile_webhooks.py
    does the same for 30 s in its own process)
    Result: every probe is a prompt 200; the flood gets 401s, then 429s, never a 500."""
    body = big_envelope()
    url = f"{hostile.base}/webhooks/{TENANT}/quo"
    latencies: list[float] = []
    statuses: list[int] = []
    stop = asyncio.Event()

    async def probe() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while not stop.is_set():
                for route in ("/readyz", "/healthz"):
                    started = time.monotonic()
                    async with session.get(hostile.base + route) as resp:
                        assert resp.status == 200
                    latencies.append((time.monotonic() - started) * 1000)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.1)

    async def attack(session: aiohttp.ClientSession) -> None:
        header = ",".join(entries(300, digest_bytes=3))
        async with session.post(url, data=body, headers={QUO_HEADER: header}) as resp:
            statuses.append(resp.status)

    prober = asyncio.create_task(probe())
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with asyncio.TaskGroup() as attacks:
            start = time.monotonic()
            for i in range(250):
                await asyncio.sleep(max(0.0, start + i / 50 - time.monotonic()))  # the rate
                attacks.create_task(attack(session))
        stop.set()
        await prober
    assert set(statuses) <= {401, 429} and statuses.count(401) >= FAILURES_PER_SOURCE
    assert len(latencies) >= 40
    p99 = sorted(latencies)[math.ceil(0.99 * len(latencies)) - 1]
    assert p99 < 250, sorted(latencies)[-5:]

