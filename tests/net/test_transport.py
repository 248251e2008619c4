"""The one transport of Quo and every CRM: slots, retry classification, caps, typed errors.

Real aiohttp servers on 127.0.0.1 stand in for the APIs: a hand-made one where the
test needs a hanging or odd answer, the Quo simulator where Quo's own quirks matter.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from crmsync.adapters.attio import AttioAdapter
from crmsync.adapters.base import NoteInput
from crmsync.adapters.errors import CRM_ERRORS, CrmServerError
from crmsync.net.ratelimit import LimiterRegistry, Limiters, Limits, SlidingWindowLimiter
from crmsync.net.retry import RetryPolicy
from crmsync.net.transport import Transport
from crmsync.quo.client import QuoClient
from crmsync.quo.errors import QuoDecodeError, QuoError, QuoRateLimitedError
from crmsync.sim.quo import QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.testing import wait_until

FAST_RETRIES = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.02)
NOTE = NoteInput(crm_object="people", person_id="p1", title="t", markdown="m")


@dataclass
class FakeApi:
    """A server whose answers the test scripts; counts what it received."""

    answer: Callable[[web.Request], Awaitable[web.StreamResponse]]
    requests: list[str] = field(default_factory=list)
    url: str = ""


@contextlib.asynccontextmanager
async def fake_api(
    answer: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[FakeApi]:
    api = FakeApi(answer)

    async def handle(request: web.Request) -> web.StreamResponse:
        api.requests.append(f"{request.method} {request.path}")
        return await api.answer(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v2"
    try:
        yield api
    finally:
        await runner.cleanup()


def json_answer(body: object, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


async def test_cancelled_crm_calls_leave_no_slot_occupied() -> None:
    """1. an Attio account (25 writes/s) whose API accepts requests and never answers
    2. 100 note writes start: 25 get a slot and are in flight, 75 wait for one
    3. all 100 are cancelled (a shutdown, a supervisor restart)
    4. the API answers again
    Result: no slot is left in flight, the limiter holds no more than its 25 slots,
    and once their window has passed none is occupied and the next write is granted
    at once and succeeds. (Before: a cancelled call never released its slot, and after
    25 the account could never write again.)"""
    answering = asyncio.Event()

    async def hang_until_answering(request: web.Request) -> web.StreamResponse:
        await answering.wait()
        return json_answer({"data": {"id": {"note_id": "note-1"}}})

    registry = LimiterRegistry()
    async with fake_api(hang_until_answering) as api, aiohttp.ClientSession() as session:
        adapter = AttioAdapter(session, api_key="k", base_url=api.url, limiters=registry)
        ((_, write),) = [(n, lim) for n, lim in registry.items() if n.endswith(":write")]
        calls = [asyncio.create_task(adapter.write_note(NOTE)) for _ in range(100)]
        await wait_until(lambda: write.in_flight == 25 and write.waiting == 75,
                         within=5, message="25 writes in flight, 75 waiting")
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)

        assert write.in_flight == 0
        assert write.waiting == 0
        assert write.occupied() <= 25
        await wait_until(lambda: write.occupied() == 0, within=3, message="windows passed")
        answering.set()
        slot = await write.acquire()
        assert slot.waited == 0.0  # granted at once
        slot.done()
        async with asyncio.timeout(5):
            assert await adapter.write_note(NOTE) == "note-1"


async def test_retry_after_pauses_the_key_at_most_the_cap() -> None:
    """1. Quo answers the first request 429 with `Retry-After: 86400` (a day)
    2. the client's cap on a pause is 0.3 s
    Result: the key is paused for the cap, not a day; the call then succeeds."""
    config = QuoSimConfig(api_keys=["key"], requests_per_second=100)
    async with run_quo_simulator(config=config) as (sim, url), aiohttp.ClientSession() as s:
        limiter = SlidingWindowLimiter(100)
        quo = QuoClient(s, base_url=url, api_key="key", limiter=limiter, tenant="t",
                        retry=FAST_RETRIES, max_pause=0.3)
        sim.faults.force_429(1, retry_after=86400)
        loop = asyncio.get_running_loop()
        started = loop.time()
        call = asyncio.create_task(quo.list_phone_numbers())
        await wait_until(lambda: limiter.paused_for > 0, within=5, message="key paused")
        assert limiter.paused_for <= 0.3
        async with asyncio.timeout(5):
            await call
        assert loop.time() - started < 3


async def test_a_body_that_does_not_decode_is_a_typed_api_error() -> None:
    """Quo answers 200 with a contact missing `defaultFields.firstName`: the client
    raises `QuoDecodeError` (a `QuoError`, naming the call), never msgspec's error."""

    async def contact_without_first_name(request: web.Request) -> web.StreamResponse:
        return json_answer({"data": {"id": "CT1", "defaultFields": {"lastName": "Novak"}}})

    async with fake_api(contact_without_first_name) as api, aiohttp.ClientSession() as s:
        quo = QuoClient(s, base_url=api.url, api_key="key", limiter=SlidingWindowLimiter(10),
                        tenant="t", retry=FAST_RETRIES)
        with pytest.raises(QuoDecodeError, match=r"GET /contacts/\{id\}: .*firstName") as raised:
            await quo.get_contact("CT1")
    assert isinstance(raised.value, QuoError)
    assert api.requests == ["GET /v2/contacts/CT1"]  # a decode error is not retried


@pytest.mark.parametrize(
    ("method", "idempotent", "attempts"),
    [
        ("GET", None, 4),  # a read: repeated until the retries run out
        ("DELETE", None, 4),  # idempotent by nature
        ("POST", None, 1),  # may have happened: never repeated blindly
        ("POST", True, 4),  # the caller made it safe (e.g. a create keyed by externalId)
    ],
)
async def test_5xx_is_retried_only_where_a_repeat_is_safe(
    method: str, idempotent: bool | None, attempts: int
) -> None:
    async def always_500(request: web.Request) -> web.StreamResponse:
        return json_answer({"message": "boom"}, status=500)

    async with fake_api(always_500) as api, aiohttp.ClientSession() as session:
        limiter = SlidingWindowLimiter(100)
        http = Transport(session, api="crm", base_url=api.url, headers={},
                         limiters=Limiters.shared(limiter), errors=CRM_ERRORS,
                         retry=FAST_RETRIES)
        with pytest.raises(CrmServerError):
            await http.request(method, "/things", idempotent=idempotent)
    assert len(api.requests) == attempts
    assert limiter.in_flight == 0


async def test_a_429_is_always_retried_and_pauses_only_its_budget() -> None:
    """A write answered 429 is retried (nothing was processed) and pauses the account's
    write budget; its read budget stays free."""
    answers = iter([json_answer({}, status=429), json_answer({"ok": True})])

    async def scripted(request: web.Request) -> web.StreamResponse:
        return next(answers)

    async with fake_api(scripted) as api, aiohttp.ClientSession() as session:
        limiters = LimiterRegistry().for_account(
            "crm", "k", Limits(100, write_rate=25)
        )
        http = Transport(session, api="crm", base_url=api.url, headers={}, limiters=limiters,
                         errors=CRM_ERRORS, retry=FAST_RETRIES)
        assert await http.call("POST", "/notes", json={"x": 1}) == {"ok": True}
    assert api.requests == ["POST /v2/notes", "POST /v2/notes"]
    assert limiters.read.paused_for == 0.0


async def test_every_429_is_counted_also_the_one_that_ends_the_retries() -> None:
    """1. Quo answers the next 10 requests 429 (no Retry-After)
    2. a call with 3 retries: 4 requests, all 429; it raises `QuoRateLimitedError`
    Result: `crmsync_rate_limited_responses_total` went up by 4, as did
    `crmsync_quo_requests_total{status="429"}`. (Regression test, found by the fault
    suite: the last 429, after which the call gives up, was not counted as rate
    limited, so the two metrics disagreed exactly when the 429s cost a record.)"""
    tenant = "t-429-exhausted"
    config = QuoSimConfig(api_keys=["key"], requests_per_second=100)
    async with run_quo_simulator(config=config) as (sim, url), aiohttp.ClientSession() as s:
        quo = QuoClient(s, base_url=url, api_key="key", limiter=SlidingWindowLimiter(100),
                        tenant=tenant, retry=FAST_RETRIES)
        sim.faults.force_429(10)
        with pytest.raises(QuoRateLimitedError):
            await quo.list_phone_numbers()
    assert sim.rate_limited == 4
    answered = REGISTRY.get_sample_value("crmsync_quo_requests_total", {
        "tenant": tenant, "method": "GET", "route": "/phone-numbers", "status": "429"})
    limited = REGISTRY.get_sample_value("crmsync_rate_limited_responses_total",
                                        {"tenant": tenant})
    assert (answered, limited) == (4, 4)
