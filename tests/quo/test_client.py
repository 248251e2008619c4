"""The Quo client against the strict simulator: creates, 409s, chunking, paging, retries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from crmsync.net.ratelimit import SlidingWindowLimiter, slot_trace_config
from crmsync.net.retry import RetryPolicy
from crmsync.quo.client import QuoClient
from crmsync.quo.errors import QuoDecodeError, QuoValidationError
from crmsync.quo.models import ContactInput, DefaultFields, LabeledValue
from crmsync.services.contact_writes import QuoContactSync
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator

KEY = "test-key"


@dataclass
class Env:
    sim: QuoSim
    client: QuoClient
    session: aiohttp.ClientSession

    def requests(self, method: str, route: str) -> int:
        """Requests the simulator saw for a route template, whatever their status."""
        return self.sim.count(method, route)


def contact(external_id: str, phone: str = "+14155550100") -> ContactInput:
    return ContactInput(
        default_fields=DefaultFields(
            first_name="Ada",
            last_name="Lovelace",
            phone_numbers=[LabeledValue(name="mobile", value=phone)],
            emails=[LabeledValue(name="work", value=f"{external_id}@example.com")],
        ),
        external_id=external_id,
        source="attio",
    )


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    config = QuoSimConfig(api_keys=[KEY], requests_per_second=1000)
    async with (
        run_quo_simulator(config=config) as (sim, base_url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as s,
    ):
        client = QuoClient(
            s,
            base_url=base_url,
            api_key=KEY,
            limiter=SlidingWindowLimiter(1000),
            tenant="t1",
            timeout=5,
            retry=RetryPolicy(max_retries=5, base_delay=0.01, max_delay=0.05),
        )
        yield Env(sim, client, s)


async def test_create_returns_the_contact(env: Env) -> None:
    created = await env.client.create_contact(contact("rec-1"))
    assert created.id
    assert created.external_id == "rec-1"
    assert created.default_fields.phone_numbers[0].value == "+14155550100"


async def test_409_on_duplicate_external_id_is_resolved_by_lookup(env: Env) -> None:
    first = await env.client.create_contact(contact("rec-dup"))
    sync = QuoContactSync(env.client)
    action, contact_id = await sync.create("rec-dup", contact("rec-dup"))
    assert (action, contact_id) == ("linked", first.id)
    assert env.requests("POST", "/v1/contacts") == 2  # one 201, one 409
    assert env.requests("GET", "/v1/contacts") == 1  # the lookup, by externalId
    assert env.requests("PATCH", "/v1/contacts/{id}") == 0  # same content: no update


async def test_409_lookup_patches_when_content_differs(env: Env) -> None:
    await env.client.create_contact(contact("rec-changed"))
    sync = QuoContactSync(env.client)
    action, contact_id = await sync.create("rec-changed", contact("rec-changed", "+14155550199"))
    assert action == "linked"
    fetched = await env.client.get_contact(contact_id)
    assert [p.value for p in fetched.default_fields.phone_numbers] == ["+14155550199"]


async def test_45_external_ids_take_3_list_calls(env: Env) -> None:
    ids = [f"rec-{i:03d}" for i in range(45)]
    for external_id in ids[:30]:
        await env.client.create_contact(contact(external_id))
    before = env.requests("GET", "/v1/contacts")
    found = await env.client.list_contacts_by_external_ids(ids)
    assert env.requests("GET", "/v1/contacts") - before == 3
    assert sorted(c.external_id for c in found) == ids[:30]


async def test_listing_follows_page_tokens_until_null(env: Env) -> None:
    for i in range(120):
        await env.client.create_contact(contact(f"page-{i:03d}"))
    before = env.requests("GET", "/v1/contacts")
    pages = [page async for page in env.client.iter_contacts()]
    assert [len(p) for p in pages] == [50, 50, 20]
    assert env.requests("GET", "/v1/contacts") - before == 3
    assert len({c.id for page in pages for c in page}) == 120


async def test_injected_500s_and_dropped_connections_are_retried(env: Env) -> None:
    env.sim.faults.fail(2, status=500)
    created = await env.client.create_contact(contact("after-500s"))
    assert created.external_id == "after-500s"
    env.sim.faults.drop(2)
    fetched = await env.client.get_contact(created.id)
    assert fetched.id == created.id
    assert env.sim.faults.injected_failures == 2
    assert env.sim.faults.dropped_connections == 2


async def test_retry_after_is_honoured(env: Env) -> None:
    env.sim.faults.force_429(1, retry_after=0.6)
    started = time.monotonic()
    await env.client.create_contact(contact("after-429"))
    assert time.monotonic() - started >= 0.6
    assert env.sim.faults.forced_429s == 1


async def test_validation_errors_are_not_retried(env: Env) -> None:
    with pytest.raises(QuoValidationError) as info:
        await env.client.create_contact(contact("bad-phone", phone="555-0100"))
    assert info.value.status == 400
    assert env.requests("POST", "/v1/contacts") == 1


async def test_errors_never_contain_the_api_key(env: Env) -> None:
    env.sim.faults.fail(10, status=500)
    with pytest.raises(Exception) as info:
        await env.client.get_contact("nope")
    assert KEY not in str(info.value)


@pytest.mark.slow
async def test_50_callers_for_3s_stay_under_the_limit_and_use_it() -> None:
    """1. the simulator enforces 10 rps per key over a sliding second
    2. 50 tasks share one limiter (window 1.02 s) and call as fast as it lets them, 3 s
    Result: no window of the simulator's ever held more than 10, no 429, ≥95% of 10/s."""
    rate, seconds = 10, 3.0
    config = QuoSimConfig(api_keys=[KEY], requests_per_second=rate)
    async with (
        run_quo_simulator(config=config) as (sim, base_url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as s,
    ):
        limiter = SlidingWindowLimiter(rate, window=1.02)
        client = QuoClient(s, base_url=base_url, api_key=KEY, limiter=limiter, tenant="t1")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        started_in_time: list[int] = []
        loop.call_at(deadline, lambda: started_in_time.append(limiter.total_grants))

        async def caller() -> None:
            while loop.time() < deadline:
                await client.list_phone_numbers()

        async with asyncio.TaskGroup() as tg:
            for _ in range(50):
                tg.create_task(caller())
        assert sim.max_in_any_window[KEY] <= rate
        assert sim.rate_limited == 0
        # Requests started within the 3 s, against the 30 the limit allows.
        assert started_in_time[0] / (rate * seconds) >= 0.95


async def test_a_listing_that_repeats_its_page_token_ends_with_a_decode_error() -> None:
    """1. a Quo that answers every contacts page with the same `nextPageToken`
    2. the client lists contacts by externalId
    Result: a `QuoDecodeError` after the token repeats (two requests), not an endless
    loop of requests against the key's limit."""
    requests: list[str] = []

    async def same_token(request: web.Request) -> web.Response:
        requests.append(request.query.get("pageToken", "-"))
        return web.json_response({"data": [], "nextPageToken": "again", "totalItems": 0})

    app = web.Application()
    app.router.add_get("/v1/contacts", same_token)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        async with aiohttp.ClientSession() as session:
            client = QuoClient(
                session, base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v1",
                api_key=KEY, limiter=SlidingWindowLimiter(100), tenant="t1",
            )
            with pytest.raises(QuoDecodeError, match="repeated a page token"):
                async with asyncio.timeout(5):
                    await client.list_contacts_by_external_ids(["rec-1"])
    finally:
        await runner.cleanup()
    assert requests == ["-", "again"]
