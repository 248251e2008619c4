"""The HubSpot simulator's gateway: the rolling 10-second window, search's own limit, the
daily cap, rate-limit headers, request counters, injected faults and the /_sim/ routes;
and the simulator as `crmsync sim hubspot` and the demo start it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from crmsync.sim.crms import SimOptions
from crmsync.sim.hubspot import (
    HubSpotSim,
    HubSpotSimConfig,
    run_hubspot_simulator,
    serve_hubspot_simulator_forever,
)
from crmsync.sim.hubspot.entry import ENTRY
from crmsync.sim.quo.testing import wait_until

KEY = "hubspot-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
CONTACTS = "/crm/v3/objects/contacts"
LIMIT_HEADERS = ("X-HubSpot-RateLimit-Max", "X-HubSpot-RateLimit-Remaining",
                 "X-HubSpot-RateLimit-Interval-Milliseconds")


class FakeClock:
    """The limiter's monotonic clock, moved by hand: no test waits out 10 seconds."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    yield FakeClock()


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, Any, dict[str, str]]:
    async with http.get(url) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def search(http: aiohttp.ClientSession, base: str) -> tuple[int, Any, dict[str, str]]:
    async with http.post(f"{base}{CONTACTS}/search", json={"limit": 1}) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def test_rolling_ten_second_window(http: aiohttp.ClientSession, clock: FakeClock) -> None:
    config = HubSpotSimConfig(people=3, requests_per_ten_seconds=5)
    async with run_hubspot_simulator(config=config) as (sim, base):
        sim.limiter.clock = clock
        remaining = []
        for _ in range(5):
            status, _, headers = await get(http, f"{base}{CONTACTS}")
            assert status == 200
            assert headers["X-HubSpot-RateLimit-Max"] == "5"
            assert headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
            remaining.append(headers["X-HubSpot-RateLimit-Remaining"])
            clock.now += 1.0
        assert remaining == ["4", "3", "2", "1", "0"]
        status, body, headers = await get(http, f"{base}{CONTACTS}")
        assert status == 429 and "Retry-After" not in headers
        assert body["policyName"] == "TEN_SECONDLY_ROLLING"
        assert body["errorType"] == "RATE_LIMIT" and body["status"] == "error"
        assert body["message"] == "You have reached your ten_secondly_rolling limit."
        clock.now += 5.0  # the first request (at 1000.0) has left the window ending at 1010.0
        status, _, _ = await get(http, f"{base}{CONTACTS}")
        assert status == 200
        assert sim.stats.rate_limited == 1
        assert sim.stats.max_in_any_window == {KEY: 6}
        assert sim.stats.count("GET", CONTACTS, 429) == 1
        assert sim.stats.by_route()[f"GET {CONTACTS}"] == {"200": 6, "429": 1}
        sim.reset_stats()
        assert sim.stats.total_requests == 0 and sim.stats.max_in_any_window == {KEY: 0}


async def test_rejections_can_count_against_the_window(
    http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    config = HubSpotSimConfig(requests_per_ten_seconds=2, count_rejected=True)
    async with run_hubspot_simulator(config=config) as (sim, base):
        sim.limiter.clock = clock
        statuses = []
        for _ in range(4):
            statuses.append((await get(http, f"{base}{CONTACTS}"))[0])
            clock.now += 4.0  # 2 requests per 10 s would be kept by a polite client
        assert statuses == [200, 200, 429, 429]  # the 429s keep the window full


async def test_search_has_its_own_limit_and_no_headers(
    http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    async with run_hubspot_simulator(config=HubSpotSimConfig(people=3)) as (sim, base):
        sim.limiter.clock = clock
        for _ in range(4):
            status, _, headers = await search(http, base)
            assert status == 200
            assert not any(h in headers for h in LIMIT_HEADERS)
        status, body, headers = await search(http, base)
        assert status == 429 and body["policyName"] == "SECONDLY"
        assert not any(h in headers for h in LIMIT_HEADERS)
        _, _, headers = await get(http, f"{base}{CONTACTS}")
        assert headers["X-HubSpot-RateLimit-Remaining"] == "99"  # searches are not in it
        clock.now += 1.0
        assert (await search(http, base))[0] == 200
        assert sim.stats.max_search_in_any_second == {KEY: 5}


async def test_daily_limit_and_separate_tokens(http: aiohttp.ClientSession) -> None:
    config = HubSpotSimConfig(api_keys=[KEY, "other"], daily_limit=2)
    async with run_hubspot_simulator(config=config) as (sim, base):
        assert [(await get(http, f"{base}{CONTACTS}"))[0] for _ in range(2)] == [200, 200]
        status, body, headers = await get(http, f"{base}{CONTACTS}")
        assert status == 429 and body["policyName"] == "DAILY"
        assert headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
        async with http.get(f"{base}{CONTACTS}",
                            headers={"Authorization": "Bearer other"}) as resp:
            assert resp.status == 200
        sim.limiter.reset_daily()
        assert (await get(http, f"{base}{CONTACTS}"))[0] == 200


async def test_injected_failures_and_forced_429s(http: aiohttp.ClientSession) -> None:
    async with run_hubspot_simulator(config=HubSpotSimConfig(people=3)) as (sim, base):
        before = len(sim.record_ids())
        sim.faults.fail_next = 1
        async with http.post(f"{base}{CONTACTS}",
                             json={"properties": {"email": "x@example.com"}}) as resp:
            assert resp.status == 500 and (await resp.json())["status"] == "error"
        assert len(sim.record_ids()) == before  # nothing applied
        sim.faults.rate_limit_next = 2
        for _ in range(2):
            status, body, _ = await get(http, f"{base}{CONTACTS}")
            assert status == 429 and body["policyName"] == "TEN_SECONDLY_ROLLING"
        assert (await get(http, f"{base}{CONTACTS}"))[0] == 200
        assert sim.stats.injected_failures == 3 and sim.stats.rate_limited == 2
        sim.faults.rate_limit_for(0.2)  # a burst from another app sharing the bucket
        assert (await get(http, f"{base}{CONTACTS}"))[0] == 429

        async def recovered() -> bool:
            return (await get(http, f"{base}{CONTACTS}"))[0] == 200

        await wait_until(recovered, within=3.0, message="the end of the forced burst")
        sim.faults.latency = (0.05, 0.05)
        started = asyncio.get_running_loop().time()
        assert (await get(http, f"{base}{CONTACTS}"))[0] == 200
        assert asyncio.get_running_loop().time() - started >= 0.05
        sim.faults.revoked_keys.add(KEY)
        assert (await get(http, f"{base}{CONTACTS}"))[0] == 401


async def test_dropped_connections_before_and_after_applying(
    http: aiohttp.ClientSession,
) -> None:
    async with run_hubspot_simulator(config=HubSpotSimConfig(people=3)) as (sim, base):
        sim.faults.drop_rate = 1.0
        with pytest.raises(aiohttp.ClientError):
            await get(http, f"{base}{CONTACTS}")
        assert sim.stats.total_requests == 0
        before = len(sim.record_ids())
        sim.faults.drop_rate, sim.faults.drop_after_rate = 0.0, 1.0
        with pytest.raises(aiohttp.ClientError):
            async with http.post(f"{base}{CONTACTS}",
                                 json={"properties": {"email": "lost@example.com"}}) as resp:
                await resp.read()
        assert len(sim.record_ids()) == before + 1  # applied, the answer lost
        assert sim.faults.dropped_after_apply == 1


async def test_admin_routes_faults_contacts_and_webhook_settings(
    http: aiohttp.ClientSession,
) -> None:
    async with run_hubspot_simulator(config=HubSpotSimConfig(people=3)) as (sim, base):
        async with http.post(f"{base}/_sim/faults", json={"fail_next": 1, "latency": 0.01,
                                                          "drop_webhooks": 2}) as resp:
            settings = await resp.json()
        assert settings["fail_next"] == 1 and settings["drop_webhooks"] == 2
        async with http.post(f"{base}/_sim/faults", json={"bogus": 1}) as resp:
            assert resp.status == 400
        async with http.post(f"{base}/_sim/faults", json={"clear": True}) as resp:
            assert (await resp.json())["fail_next"] == 0
        async with http.post(f"{base}/_sim/contacts", json={
                "firstname": "Eva", "email": "eva@example.com", "notify": False}) as resp:
            assert resp.status == 201
            record_id = (await resp.json())["id"]
        async with http.patch(f"{base}/_sim/contacts/{record_id}",
                              json={"jobtitle": "CTO"}) as resp:
            assert (await resp.json())["changed"] == ["jobtitle"]
        async with http.patch(f"{base}/_sim/contacts/{record_id}",
                              json={"shoe_size": "44"}) as resp:
            assert resp.status == 400
        async with http.put(f"{base}/_sim/webhooks",
                            json={"targetUrl": "http://127.0.0.1:9/hook"}) as resp:
            assert (await resp.json())["targetUrl"] == "http://127.0.0.1:9/hook"
        assert sim.hooks.target_url == "http://127.0.0.1:9/hook"
        async with http.delete(f"{base}/_sim/contacts/{record_id}?notify=false") as resp:
            assert resp.status == 200 and sim.contact(record_id).archived
        async with http.post(f"{base}/_sim/contacts/{record_id}/restore") as resp:
            assert resp.status == 200 and not sim.contact(record_id).archived
        other = sim.record_ids()[0]
        async with http.post(f"{base}/_sim/contacts/merge",
                             json={"primary": other, "merged": record_id}) as resp:
            assert (await resp.json())["id"] == other
        assert sim.contact(record_id).merged_into == int(other)
        async with http.get(f"{base}/_sim/stats") as resp:
            stats = await resp.json()
        assert stats["contacts"] == len(sim.record_ids()) and stats["total_requests"] == 0
        assert stats["webhook_events"] == len(sim.hooks.events) > 0


async def test_entry_runs_the_demo_view(http: aiohttp.ClientSession) -> None:
    assert ENTRY.title == "HubSpot" and ENTRY.webhook_secret == "hubspot-app-secret"
    options = SimOptions(api_keys=[ENTRY.default_key], people=20, rate=3)
    async with ENTRY.run(options) as (view, base):
        sim: HubSpotSim = view.sim  # type: ignore[attr-defined]
        assert sim.config.requests_per_ten_seconds == 30
        record_id = view.record_ids()[0]
        assert view.person_phones(record_id) == sim.person_phones(record_id)
        assert (view.requests_answered(), view.rate_limited()) == (0, 0)
        view.point_webhooks("http://127.0.0.1:9/hook")
        assert sim.hooks.target_url == "http://127.0.0.1:9/hook"
        lines = view.try_lines(base, ENTRY.default_key, record_id)
        assert set(lines) == {"notes", "change", "person"}
        assert f"{base}/_sim/contacts/{record_id}" in lines["change"].line
        person_url = lines["person"].line.split("'")[-2]
        status, body, _ = await get(http, person_url)
        assert status == 200 and body["id"] == record_id
        notes_url = lines["notes"].line.split("'")[-2]
        assert (await get(http, notes_url))[1] == {"results": []}


async def test_serve_forever_prints_the_url_and_token(capsys: pytest.CaptureFixture[str]) -> None:
    task = asyncio.create_task(serve_hubspot_simulator_forever(
        config=HubSpotSimConfig(people=3)))
    output = ""

    def printed() -> bool:
        nonlocal output
        output += capsys.readouterr().out
        return "Private app token: hubspot-test-key" in output

    await wait_until(printed, within=5.0, message="the banner")
    base = output.split("HubSpot simulator: ", 1)[1].split()[0]
    async with aiohttp.ClientSession(headers=AUTH) as http:
        status, body, _ = await get(http, f"{base}{CONTACTS}")
    assert status == 200 and 1 <= len(body["results"]) <= 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
