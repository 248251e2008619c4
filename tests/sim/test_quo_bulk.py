"""Quo simulator: asynchronous `POST /v1/contacts/bulk`.

Quo answers 202 with an empty body and creates the contacts seconds later, silently
dropping invalid ones and duplicates. These tests wait for visibility by polling the
list endpoint against a deadline, never by sleeping a guessed delay.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.testing import SimApi, contact_body, wait_until

DELAY = (0.2, 0.4)


@pytest.fixture
async def quo() -> AsyncIterator[tuple[QuoSim, SimApi]]:
    config = QuoSimConfig(requests_per_second=10_000, bulk_visibility_delay=DELAY, seed=3)
    async with (
        run_quo_simulator(config=config) as (sim, base_url),
        aiohttp.ClientSession() as session,
    ):
        yield sim, SimApi(session, base_url, sim.api_key)


async def _listed(api: SimApi, external_ids: list[str]) -> set[str]:
    params = [("externalIds", e) for e in external_ids] + [("maxResults", "50")]
    response = await api.get("/contacts", params=params)
    assert response.status == 200
    return {c["externalId"] for c in response.json["data"]}


async def test_bulk_is_202_empty_then_visible_after_a_delay(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    ids = [f"bulk-{i}" for i in range(5)]
    response = await api.post("/contacts/bulk", json={"contacts": [contact_body(i) for i in ids]})
    assert response.status == 202
    assert response.body == b""
    assert await _listed(api, ids) == set()  # accepted, not created yet
    assert sim.bulk.pending_count == 5

    async def all_visible() -> bool:
        return await _listed(api, ids) == set(ids)

    await wait_until(all_visible, within=5.0, message="bulk contacts visible")
    assert sim.bulk.counters.materialised == 5
    assert sim.bulk.pending_count == 0


async def test_bulk_drops_invalid_and_duplicates_silently(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    assert (await api.post("/contacts", json=contact_body("exists"))).status == 201
    contacts = [
        contact_body("good"),
        contact_body("exists"),  # duplicate of a visible contact
        contact_body("bad-phone", phones=["555-0100"]),
        contact_body("reserved", source="openphone"),
    ]
    response = await api.post("/contacts/bulk", json={"contacts": contacts})
    assert (response.status, response.body) == (202, b"")

    await wait_until(lambda: sim.bulk.pending_count == 0, within=5.0)
    assert await _listed(api, ["good", "exists", "bad-phone", "reserved"]) == {"good", "exists"}
    bulk = sim.bulk.counters
    assert (bulk.dropped_invalid, bulk.dropped_duplicate, bulk.materialised) == (2, 1, 1)
    assert sim.snapshot()["bulk_dropped"] == 3


async def test_never_visible_hook(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    sim.bulk_never_visible.add("ghost")
    contacts = [contact_body("ghost"), contact_body("real")]
    assert (await api.post("/contacts/bulk", json={"contacts": contacts})).status == 202

    async def real_visible() -> bool:
        return await _listed(api, ["real"]) == {"real"}

    await wait_until(real_visible, within=5.0)
    await wait_until(lambda: sim.bulk.pending_count == 0, within=5.0)
    assert await _listed(api, ["ghost"]) == set()
    assert sim.bulk.counters.never_visible == 1


async def test_single_create_wins_over_a_pending_bulk_duplicate(
    quo: tuple[QuoSim, SimApi],
) -> None:
    sim, api = quo
    bulk = {"contacts": [contact_body("race")]}
    assert (await api.post("/contacts/bulk", json=bulk)).status == 202
    assert (await api.post("/contacts", json=contact_body("race"))).status == 201
    await wait_until(lambda: sim.bulk.pending_count == 0, within=5.0)
    assert await _listed(api, ["race"]) == {"race"}
    assert sim.bulk.counters.dropped_duplicate == 1


async def test_bulk_body_must_have_a_contacts_array(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    assert (await api.post("/contacts/bulk", json={"people": []})).status == 400
    assert (await api.post("/contacts/bulk", json=[contact_body("x")])).status == 400


async def test_bulk_size_limit_when_configured() -> None:
    config = QuoSimConfig(bulk_max_contacts=2)
    async with run_quo_simulator(config=config) as (sim, url), aiohttp.ClientSession() as s:
        api = SimApi(s, url, sim.api_key)
        body = {"contacts": [contact_body(f"c{i}") for i in range(3)]}
        assert (await api.post("/contacts/bulk", json=body)).status == 400
    assert sim.bulk.pending_count == 0


async def test_flush_makes_pending_contacts_visible_now(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    body = {"contacts": [contact_body("f1"), contact_body("f2")]}
    assert (await api.post("/contacts/bulk", json=body)).status == 202
    admin = api.base_url.removesuffix("/v1")
    async with api.session.post(admin + "/_sim/contacts/flush") as response:
        assert await response.json() == {"materialised": 2}
    assert await _listed(api, ["f1", "f2"]) == {"f1", "f2"}


async def test_pending_timers_are_cancelled_on_shutdown() -> None:
    config = QuoSimConfig(bulk_visibility_delay=(30.0, 30.0))
    async with run_quo_simulator(config=config) as (sim, url), aiohttp.ClientSession() as s:
        api = SimApi(s, url, sim.api_key)
        bulk = {"contacts": [contact_body("z")]}
        assert (await api.post("/contacts/bulk", json=bulk)).status == 202
        assert sim.bulk.pending_count == 1
    assert sim.bulk.pending_count == 0
