"""The Pipedrive simulator's limits and faults: the rolling burst window per token with
x-ratelimit-* headers and Retry-After, search's own window, the daily token budget
(429 without headers until reset), the window measurements, injected failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from multidict import CIMultiDict

from crmsync.sim.pipedrive import PipedriveSim, PipedriveSimConfig, run_pipedrive_simulator
from crmsync.sim.pipedrive.limits import BurstLimiter, token_cost
from crmsync.sim.quo.testing import ApiResponse, SimApi

KEY, OTHER = "pipedrive-test-key", "second-key"
OVER_LIMIT_BODY = {"success": False, "error": "Request over limit", "errorCode": 429,
                   "error_info": "Please check developers.pipedrive.com", "data": None,
                   "additional_data": None}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


def api(session: aiohttp.ClientSession, url: str, key: str = KEY) -> SimApi:
    return SimApi(session, url, None, headers={"x-api-token": key})


def headers(answer: ApiResponse) -> CIMultiDict[str]:
    """Header names are case-insensitive (aiohttp sends `X-RateLimit-Limit`)."""
    return CIMultiDict(answer.headers)


async def test_burst_window_429s_with_headers_per_token(
    session: aiohttp.ClientSession,
) -> None:
    config = PipedriveSimConfig(people=3, api_keys=[KEY, OTHER], burst_limit=5)
    async with run_pipedrive_simulator(config=config) as (sim, url):
        answers = [await api(session, url).get("/api/v2/persons/1") for _ in range(7)]
        assert [a.status for a in answers] == [200] * 5 + [429] * 2
        assert [headers(a)["x-ratelimit-remaining"] for a in answers[:5]] == [
            "4", "3", "2", "1", "0"]
        assert headers(answers[0])["x-ratelimit-limit"] == "5"
        limited = answers[5]
        assert limited.json == OVER_LIMIT_BODY
        assert headers(limited)["Retry-After"] == headers(limited)["x-ratelimit-reset"]
        assert 1 <= int(headers(limited)["Retry-After"]) <= 2
        assert (await api(session, url, OTHER).get("/api/v2/persons/1")).status == 200
        assert sim.stats.rate_limited == 2
        assert sim.stats.count("GET", "/api/v2/persons/{id}", 429) == 2
        assert sim.stats.max_in_any_window == {KEY: 7, OTHER: 1}
        sim.reset_stats()
        assert sim.stats.total_requests == 0 and sim.stats.max_in_any_window == {
            KEY: 0, OTHER: 0}


async def test_search_has_its_own_tighter_window(session: aiohttp.ClientSession) -> None:
    async with run_pipedrive_simulator(config=PipedriveSimConfig(people=5)) as (sim, url):
        client = api(session, url)
        params = {"term": "5550", "fields": "phone"}
        statuses = [(await client.get("/api/v2/persons/search", params=params)).status
                    for _ in range(11)]
        assert statuses == [200] * 10 + [429]
        assert (await client.get("/api/v2/persons")).status == 200  # 12 of 40 so far
        assert sim.stats.max_search_in_any_window == {KEY: 11}
        assert sim.stats.max_in_any_window == {KEY: 12}


async def test_daily_budget_spent_means_429_without_headers_until_reset(
    session: aiohttp.ClientSession,
) -> None:
    config = PipedriveSimConfig(people=3, daily_token_budget=25)
    async with run_pipedrive_simulator(config=config) as (sim, url):
        client = api(session, url)
        assert (await client.get("/api/v2/persons")).status == 200  # 10
        assert (await client.get("/v1/notes")).status == 200  # 20: 30 >= 25, spent
        assert sim.budget.used == 30
        refused = await client.get("/api/v2/persons/1")
        assert refused.status == 429
        assert refused.json["errorCode"] == 429
        assert not {h.lower() for h in headers(refused)} & {
            "retry-after", "x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}
        assert sim.stats.budget_refused == 1
        assert sim.stats.max_in_any_window == {KEY: 3}  # refused requests are measured too
        reset = await session.post(f"{url}/_sim/budget", json={"daily_tokens": 100})
        assert (await reset.json()) == {"total": 100, "used": 0}
        assert (await client.get("/api/v2/persons/1")).status == 200
        assert sim.budget.used == 1


def test_token_costs() -> None:
    assert token_cost("GET", "/api/v2/persons/{id}") == 1
    assert token_cost("GET", "/api/v2/persons") == 10
    assert token_cost("GET", "/api/v2/persons/search") == 20
    assert token_cost("GET", "/v1/users/me") == 2
    assert token_cost("GET", "/v1/notes") == 20
    assert token_cost("POST", "/v1/notes") == 10
    assert token_cost("PATCH", "/api/v2/persons/{id}") == 10
    assert token_cost("DELETE", "/v1/notes/{id}") == 6


def test_limiter_counts_rejections_and_reports_the_wait() -> None:
    now = [10.0]
    limiter = BurstLimiter(2, 1, 2.0, count_rejected=True, clock=lambda: now[0])
    assert [limiter.arrive("k", search=False).admitted for _ in range(3)] == [
        True, True, False]
    now[0] = 11.9
    verdict = limiter.arrive("k", search=False)  # the rejection still holds a slot
    assert not verdict.admitted and verdict.headers["Retry-After"] == "1"
    now[0] = 12.0  # all of t=10 left the window (t - 2 is outside); 11.9 holds a slot
    assert [limiter.arrive("k", search=False).admitted for _ in range(2)] == [True, False]
    assert limiter.max_in_any_window() == {"k": 4}


async def test_injected_faults(session: aiohttp.ClientSession) -> None:
    async with run_pipedrive_simulator(config=PipedriveSimConfig(people=3)) as (sim, url):
        client = api(session, url)
        faults = await session.post(f"{url}/_sim/faults", json={
            "fail_next": 1, "rate_limit_next": 2})
        assert (await faults.json())["fail_next"] == 1
        failed = await client.get("/api/v2/persons")
        assert failed.status == 500 and failed.json["success"] is False
        burst = await client.get("/api/v2/persons")
        assert burst.status == 429 and "Retry-After" in headers(burst)
        sim.faults.rate_limit_headers = False
        bare = await client.get("/api/v2/persons")
        assert bare.status == 429 and "Retry-After" not in headers(bare)
        assert (await client.get("/api/v2/persons")).status == 200
        assert sim.stats.injected_failures == 3
        sim.faults.revoked_keys.add(KEY)
        assert (await client.get("/api/v2/persons")).status == 401
        sim.faults.clear()


async def test_dropped_connections_before_and_after_applying(
    session: aiohttp.ClientSession,
) -> None:
    async with run_pipedrive_simulator(config=PipedriveSimConfig(people=3)) as (sim, url):
        client = api(session, url)
        sim.faults.drop_rate = 1.0
        with pytest.raises(aiohttp.ClientError):
            await client.get("/api/v2/persons")
        sim.faults.drop_rate, sim.faults.drop_after_rate = 0.0, 1.0
        with pytest.raises(aiohttp.ClientError):
            await client.post("/v1/notes", json={"content": "kept", "person_id": 1})
        sim.faults.clear()
        assert [n["content"] for n in sim.notes_of(1)] == ["kept"]  # applied, answer lost
        # aiohttp retries an idempotent GET once on a dropped connection; a POST never.
        assert sim.faults.dropped_connections in (1, 2)
        assert sim.faults.dropped_after_apply == 1


async def test_latency_fault_delays_the_answer(session: aiohttp.ClientSession) -> None:
    async with run_pipedrive_simulator(config=PipedriveSimConfig(people=1)) as (sim, url):
        client = api(session, url)
        sim.faults.latency = (0.2, 0.2)
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert (await client.get("/v1/users/me")).status == 200
        assert loop.time() - started >= 0.2


async def test_burst_fault_for_a_while(session: aiohttp.ClientSession) -> None:
    async with run_pipedrive_simulator(config=PipedriveSimConfig(people=1)) as (_, url):
        await session.post(f"{url}/_sim/faults", json={"rate_limit_seconds": 30})
        client = api(session, url)
        assert [(await client.get("/v1/users/me")).status for _ in range(3)] == [429] * 3
        await session.post(f"{url}/_sim/faults", json={"clear": True})
        assert (await client.get("/v1/users/me")).status == 200
        bad = await session.post(f"{url}/_sim/faults", json={"fail_rate": 2})
        assert bad.status == 400
        stats = await (await session.get(f"{url}/_sim/stats")).json()
        assert stats["rate_limited"] == 3 and stats["requests"]["GET /v1/users/me"] == {
            "200": 1, "429": 3}


def test_sim_stats_are_plain_counters() -> None:
    sim = PipedriveSim(PipedriveSimConfig())
    sim.stats.record("GET", "/api/v2/persons", 429)
    assert sim.stats.rate_limited == 1 and sim.stats.by_route() == {
        "GET /api/v2/persons": {"429": 1}}
