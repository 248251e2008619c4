"""Quo simulator: the per-key sliding-window rate limit and injected faults.

The window logic is checked exactly with a fake clock; the HTTP tests fire real
concurrent requests at a running simulator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from crmsync.sim.quo import QuoSim, QuoSimConfig, QuoSimStats, run_quo_simulator
from crmsync.sim.quo.ratelimit import SlidingWindowGate
from crmsync.sim.quo.testing import ApiResponse, SimApi, wait_until

RATE_LIMITED = {"message": "API rate limit exceeded"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the window, exactly ----------------------------------------------------------------


def test_gate_admits_rate_per_sliding_window() -> None:
    clock = FakeClock()
    gate = SlidingWindowGate(3, 1.0, clock=clock)
    results = []
    for t in (0.0, 0.1, 0.2, 0.3, 1.0, 1.05, 1.15):
        clock.now = 100.0 + t
        results.append(gate.arrive("k"))
    # 0.3 is rejected (3 in window) but still counted: at 1.0 the window (0.0, 1.0]
    # holds 0.1, 0.2, 0.3 -> rejected, and each rejection prolongs the lockout.
    assert results == [True, True, True, False, False, False, False]


def test_gate_without_counting_rejections() -> None:
    clock = FakeClock()
    gate = SlidingWindowGate(3, 1.0, count_rejected=False, clock=clock)
    results = []
    for t in (0.0, 0.1, 0.2, 0.3, 1.0, 1.05, 1.15):
        clock.now = 100.0 + t
        results.append(gate.arrive("k"))
    # 1.0 drops 0.0 (exactly one window old) and admits; 1.05 still sees 0.1, 0.2, 1.0.
    assert results == [True, True, True, False, True, False, True]


def test_max_in_any_window_is_exact_and_per_key() -> None:
    clock = FakeClock()
    gate = SlidingWindowGate(100, 1.0, clock=clock)
    for t in (0.0, 0.5, 0.9, 1.0, 1.4, 1.45, 3.0):
        clock.now = 100.0 + t
        gate.arrive("a")
    clock.now = 104.0
    gate.arrive("b")
    # Best window: (0.45, 1.45] holds 0.5, 0.9, 1.0, 1.4, 1.45.
    assert gate.max_in_any_window() == {"a": 5, "b": 1}
    gate.reset_stats()
    assert gate.max_in_any_window() == {"a": 0, "b": 0}


def test_forced_rejections_are_counted_as_arrivals() -> None:
    clock = FakeClock()
    gate = SlidingWindowGate(2, 1.0, clock=clock)
    assert gate.arrive("k", force_reject=True) is False
    assert gate.arrive("k") is True
    assert gate.arrive("k") is False  # the forced rejection occupies a slot
    assert gate.keys["k"].rejected == 2



def test_each_key_keeps_its_first_and_last_arrival() -> None:
    clock = FakeClock()
    gate = SlidingWindowGate(10, 1.0, clock=clock)
    assert "k" not in gate.keys
    for t in (0.0, 0.1, 0.25, 2.0):
        clock.now = 100.0 + t
        gate.arrive("k")
    state = gate.keys["k"]
    assert (state.first_arrival, state.last_arrival) == (100.0, 102.0)
    # From the first arrival to the end of the last one's window.
    assert gate.active_seconds("k") == pytest.approx(3.0)
    assert gate.active_seconds("never") == 0.0
    gate.reset_stats()
    assert state.first_arrival is None and gate.active_seconds("k") == 0.0

# -- over HTTP ----------------------------------------------------------------------------


@pytest.fixture
async def quo() -> AsyncIterator[tuple[QuoSim, SimApi]]:
    async with (
        run_quo_simulator(config=QuoSimConfig(seed=11)) as (sim, base_url),
        aiohttp.ClientSession() as session,
    ):
        yield sim, SimApi(session, base_url, sim.api_key)


async def _burst(api: SimApi, n: int) -> list[ApiResponse]:
    return list(await asyncio.gather(*(api.get("/phone-numbers") for _ in range(n))))


async def test_fifteen_at_once_ten_pass_five_get_429(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    responses = await _burst(api, 15)
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 10 + [429] * 5
    for response in responses:
        if response.status == 429:
            assert response.json == RATE_LIMITED
            assert "Retry-After" not in response.headers
    assert sim.max_in_any_window == {"test-key": 15}
    assert sim.rate_limited == 5
    assert sim.count("GET", "/v1/phone-numbers", 429) == 5
    assert isinstance(sim.stats, QuoSimStats)
    assert (sim.stats.total_requests, sim.stats.rate_limited) == (15, 5)
    assert sim.stats.by_route() == {"GET /v1/phone-numbers": {"200": 10, "429": 5}}
    snapshot = sim.snapshot()
    assert snapshot["max_in_any_window"] == {"test-key": 15}
    assert snapshot["requests"]["GET /v1/phone-numbers"] == {"200": 10, "429": 5}


async def test_window_slides_open_again(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    await _burst(api, 10)
    assert (await api.get("/phone-numbers")).status == 429

    async def admitted() -> bool:
        return (await api.get("/phone-numbers")).status == 200

    # Polling also knocks (and, counted, extends the lockout): poll gently.
    await wait_until(admitted, within=5.0, interval=0.35, message="window reopens")


async def test_keys_have_separate_windows() -> None:
    config = QuoSimConfig(api_keys=["key-a", "key-b"])
    async with run_quo_simulator(config=config) as (sim, url), aiohttp.ClientSession() as s:
        a, b = SimApi(s, url, "key-a"), SimApi(s, url, "key-b")
        assert [r.status for r in await _burst(a, 10)] == [200] * 10
        assert [r.status for r in await _burst(b, 10)] == [200] * 10
        assert (await a.get("/phone-numbers")).status == 429
    assert sim.max_in_any_window == {"key-a": 11, "key-b": 10}


async def test_unauthorized_requests_do_not_use_a_keys_budget(
    quo: tuple[QuoSim, SimApi],
) -> None:
    sim, api = quo
    stranger = SimApi(api.session, api.base_url, "nope")
    assert {r.status for r in await _burst(stranger, 12)} == {401}
    assert [r.status for r in await _burst(api, 10)] == [200] * 10
    assert sim.rate_limited == 0


async def test_retry_after_header_option() -> None:
    config = QuoSimConfig(retry_after_header=True, requests_per_second=2)
    async with run_quo_simulator(config=config) as (sim, url), aiohttp.ClientSession() as s:
        responses = await _burst(SimApi(s, url, sim.api_key), 3)
    [limited] = [r for r in responses if r.status == 429]
    assert limited.headers["Retry-After"] == "1"
    assert limited.json == RATE_LIMITED


# -- faults -------------------------------------------------------------------------------


async def test_fail_next_then_success(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    sim.faults.fail(2)
    first, second, third = [await api.get("/phone-numbers") for _ in range(3)]
    assert (first.status, second.status, third.status) == (500, 500, 200)
    assert first.json["code"] == "0801500" and first.json["title"] == "Unknown"
    assert sim.faults.injected_failures == 2


async def test_failure_limited_to_a_route(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    sim.faults.fail(1, status=503, route="GET /v1/users")
    assert (await api.get("/phone-numbers")).status == 200
    assert (await api.get("/users", params={"maxResults": "5"})).status == 503
    assert (await api.get("/users", params={"maxResults": "5"})).status == 200


async def test_dropped_connection_raises_a_client_error(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    sim.faults.drop(1)
    with pytest.raises(aiohttp.ClientError):
        await api.post("/contacts", json={"defaultFields": {"firstName": "X"}})
    assert sim.contacts.contacts == {}
    # aiohttp silently retries an idempotent request once on a dropped connection,
    # so a GET needs two drops in a row to surface.
    sim.faults.drop(2)
    with pytest.raises(aiohttp.ClientError):
        await api.get("/phone-numbers")
    assert (await api.get("/phone-numbers")).status == 200
    assert sim.faults.dropped_connections == 3
    assert sim.gate.keys["test-key"].arrivals == 1  # dropped requests never arrived


async def test_forced_429_for_next_requests(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    sim.faults.force_429(2, retry_after=3)
    limited = [await api.get("/phone-numbers") for _ in range(2)]
    assert all(r.status == 429 and r.json == RATE_LIMITED for r in limited)
    assert all(r.headers["Retry-After"] == "3" for r in limited)
    assert (await api.get("/phone-numbers")).status == 200
    assert sim.rate_limited == 2 and sim.faults.forced_429s == 2


async def test_forced_429_for_a_duration(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    sim.faults.force_429(seconds=0.3)
    assert (await api.get("/phone-numbers")).status == 429

    async def recovered() -> bool:
        return (await api.get("/phone-numbers")).status == 200

    await wait_until(recovered, within=3.0, interval=0.15)


async def test_latency_delays_every_request(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    sim.faults.set_latency(0.2)
    started = time.monotonic()
    responses = await asyncio.gather(*(api.get("/phone-numbers") for _ in range(3)))
    elapsed = time.monotonic() - started
    assert [r.status for r in responses] == [200] * 3
    assert 0.2 <= elapsed < 1.0  # concurrent: latency does not serialise requests
    sim.faults.set_latency((0.0, 0.05))
    assert (await api.get("/phone-numbers")).status == 200


async def test_faults_over_http_admin(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    admin = api.base_url.removesuffix("/v1") + "/_sim/faults"
    settings = {"fail_next": 1, "fail_route": "/v1/phone-numbers", "drop_next": 0}
    async with api.session.post(admin, json=settings) as response:
        assert response.status == 200
        assert (await response.json())["fail_next"] == 1
    assert (await api.get("/phone-numbers")).status == 500
    async with api.session.post(admin, json={"force_429_next": 1, "retry_after": 2}) as response:
        assert response.status == 200
    limited = await api.get("/phone-numbers")
    assert limited.status == 429 and limited.headers["Retry-After"] == "2"
    async with api.session.post(admin, json={"latency": [0.0, 0.01]}) as response:
        assert (await response.json())["latency"] == [0.0, 0.01]
    async with api.session.post(admin, json={"clear": True, "latency": None}) as response:
        assert (await response.json())["latency"] is None
    async with api.session.post(admin, json={"bogus": 1}) as response:
        assert response.status == 400
    assert sim.faults.injected_failures == 1
