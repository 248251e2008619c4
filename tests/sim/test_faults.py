"""The simulators' fault injection used by the proof suites (tests/reliability/).

Quo: connections dropped after the request was applied, rate-based faults replayed from
a seed, latency spikes, per-method counts, webhooks removed or disabled from the admin
API. Attio: the same kinds (500s, drops before and after applying, spikes, 429 bursts
with and without `Retry-After`), short and repeated listing pages, revoked keys, and
webhooks expired, removed and redelivered from the admin API.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from sim.webhook_support import receiver

from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.faults import Faults
from crmsync.sim.quo.testing import SimApi, contact_body

ATTIO_KEY = "attio-test-key"
ATTIO_AUTH = {"Authorization": f"Bearer {ATTIO_KEY}"}


@pytest.fixture
async def quo() -> AsyncIterator[tuple[QuoSim, SimApi, str]]:
    config = QuoSimConfig(requests_per_second=1000, seed=3)
    async with (
        run_quo_simulator(config=config) as (sim, base_url),
        aiohttp.ClientSession() as session,
    ):
        yield sim, SimApi(session, base_url, sim.api_key), base_url.removesuffix("/v1")


@pytest.fixture
async def attio() -> AsyncIterator[tuple[AttioSim, str, aiohttp.ClientSession]]:
    async with (
        run_attio_simulator(config=AttioSimConfig(people=45, seed=4)) as (sim, base),
        aiohttp.ClientSession(headers=ATTIO_AUTH) as http,
    ):
        yield sim, base, http


# -- Quo -----------------------------------------------------------------------------------


async def test_quo_drop_after_applies_the_create_and_loses_the_answer(
    quo: tuple[QuoSim, SimApi, str],
) -> None:
    """1. the next POST /v1/contacts is dropped after it was applied
    2. the client creates a contact, then creates it again
    Result: the first create raises a disconnect, yet the contact exists; the second
    is Quo's 409 (the externalId is taken); both answers are counted, the drop too."""
    sim, api, _ = quo
    sim.faults.drop_after(1, route="POST /v1/contacts")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await api.post("/contacts", json=contact_body("x1"))
    assert [c["externalId"] for c in sim.contacts.contacts.values()] == ["x1"]
    assert (await api.post("/contacts", json=contact_body("x1"))).status == 409
    assert sim.faults.dropped_after_apply == 1
    assert sim.faults.fired == {"drop_after POST": 1}
    assert sim.count("POST", "/v1/contacts") == 2


def test_quo_rates_replay_from_the_seed() -> None:
    """The same seed draws the same faults for the same requests; another seed not."""

    def draws(seed: int) -> list[tuple[int | None, bool, bool, float]]:
        faults = Faults()
        faults.reseed(seed)
        faults.set_rates(fail=0.3, drop=0.2, drop_after=0.2, spike=0.3, spike_seconds=2.0)
        return [
            (faults.take_failure("GET", "/v1/x", "/v1/x"),
             faults.take_drop("GET", "/v1/x", "/v1/x"),
             faults.take_drop_after("GET", "/v1/x", "/v1/x"),
             faults.delay(faults.rng, "GET", "/v1/x", "/v1/x"))
            for _ in range(40)
        ]

    assert draws(7) == draws(7) != draws(8)
    kinds = draws(7)
    assert any(k[0] == 500 for k in kinds) and any(k[1] for k in kinds)
    assert any(k[2] for k in kinds) and any(k[3] == 2.0 for k in kinds)


def test_quo_rates_are_probabilities_and_may_be_limited_to_a_route() -> None:
    faults = Faults()
    with pytest.raises(ValueError, match="probability"):
        faults.set_rates(fail=1.5)
    faults.set_rates(fail=1.0, route="PATCH /v1/contacts/{id}")
    assert faults.take_failure("GET", "/v1/contacts/C1", "/v1/contacts/{id}") is None
    assert faults.take_failure("PATCH", "/v1/contacts/C1", "/v1/contacts/{id}") == 500
    assert faults.fired == {"fail PATCH": 1}


async def test_quo_faults_by_rate_over_the_admin_api(quo: tuple[QuoSim, SimApi, str]) -> None:
    """POST /_sim/faults sets the rates (and the seed); a rate above 1 is a 400."""
    sim, api, root = quo
    settings = {"seed": 1, "fail_rate": 1.0, "fail_status": 503, "rate_route": "/v1/users"}
    async with api.session.post(root + "/_sim/faults", json=settings) as response:
        body = await response.json()
    assert (body["fail_rate"], body["fail_status"]) == (1.0, 503)
    assert (await api.get("/users")).status == 503
    assert (await api.get("/phone-numbers")).status == 200
    async with api.session.post(root + "/_sim/faults", json={"drop_rate": 2}) as response:
        assert response.status == 400
    async with api.session.post(root + "/_sim/faults", json={"latency": [1, 0]}) as response:
        assert response.status == 400
    async with api.session.post(root + "/_sim/faults", json={"clear": True}) as response:
        assert (await response.json())["fail_rate"] == 0.0
    assert sim.faults.injected_failures == 1


async def test_quo_latency_spikes_delay_requests(quo: tuple[QuoSim, SimApi, str]) -> None:
    sim, api, _ = quo
    sim.faults.set_rates(spike=1.0, spike_seconds=0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await api.get("/phone-numbers")).status == 200
    assert loop.time() - started >= 0.2
    assert sim.faults.latency_spikes == 1


async def test_quo_webhooks_removed_or_disabled_from_the_admin_api(
    quo: tuple[QuoSim, SimApi, str],
) -> None:
    sim, api, root = quo
    created = await api.post("/webhooks/messages", json={
        "url": "https://example.com/hook", "events": ["message.received"]})
    webhook_id = created.json["data"]["id"]
    async with api.session.post(f"{root}/_sim/webhooks/{webhook_id}/disable") as response:
        assert (await response.json())["data"]["status"] == "disabled"
    async with api.session.delete(f"{root}/_sim/webhooks/{webhook_id}") as response:
        assert response.status == 204
    assert sim.webhooks == {}
    async with api.session.delete(f"{root}/_sim/webhooks/{webhook_id}") as response:
        assert response.status == 404


# -- Attio -----------------------------------------------------------------------------------


async def page(http: aiohttp.ClientSession, base: str, offset: int) -> list[str]:
    body = {"limit": 20, "offset": offset}
    async with http.post(f"{base}/objects/people/records/query", json=body) as response:
        assert response.status == 200
        return [r["id"]["record_id"] for r in (await response.json())["data"]]


async def test_attio_short_and_repeated_pages(
    attio: tuple[AttioSim, str, aiohttp.ClientSession],
) -> None:
    """1. every full page of the listing comes back short (more records follow)
    2. then: the page at offset 20 comes back as the page at offset 0 (once)
    Result: a short page is a prefix of the real one; the repeated page is the one
    before; the last page (nothing follows) and filtered queries are never touched."""
    sim, base, http = attio
    ordered = [r.record_id for r in sim.people.ordered()]
    sim.faults.short_page_rate = 1.0
    short = await page(http, base, 0)
    assert 1 <= len(short) < 20 and short == ordered[:len(short)]
    assert await page(http, base, 40) == ordered[40:]  # the last page: honest
    sim.faults.short_page_rate = 0.0
    sim.faults.repeat_page_next = 1
    assert await page(http, base, 20) == ordered[0:20]
    assert await page(http, base, 20) == ordered[20:40]
    assert (sim.faults.short_pages, sim.faults.repeated_pages) == (1, 1)


async def test_attio_429_bursts_with_and_without_retry_after(
    attio: tuple[AttioSim, str, aiohttp.ClientSession],
) -> None:
    sim, base, http = attio
    sim.faults.rate_limit_next = 1
    async with http.get(f"{base}/self") as response:
        assert response.status == 429 and "Retry-After" in response.headers
    sim.faults.rate_limit_for(5.0, retry_after=False)
    async with http.get(f"{base}/self") as response:
        assert response.status == 429 and "Retry-After" not in response.headers
    sim.faults.clear()
    async with http.get(f"{base}/self") as response:
        assert response.status == 200
    assert sim.faults.forced_429s == 2 and sim.stats.rate_limited == 2


async def test_attio_drops_before_and_after_applying_a_note(
    attio: tuple[AttioSim, str, aiohttp.ClientSession],
) -> None:
    """A dropped POST /v2/notes before: no note. After: the note exists, unanswered."""
    sim, base, http = attio
    person = next(iter(sim.people)).record_id
    note = {"data": {"parent_object": "people", "parent_record_id": person, "title": "t",
                     "format": "plaintext", "content": "c"}}
    sim.faults.drop_rate = 1.0
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(f"{base}/notes", json=note):
            pass
    assert sim.notes == {}
    sim.faults.drop_rate, sim.faults.drop_after_rate = 0.0, 1.0
    with pytest.raises(aiohttp.ServerDisconnectedError):
        async with http.post(f"{base}/notes", json=note):
            pass
    assert len(sim.notes) == 1
    assert (sim.faults.dropped_connections, sim.faults.dropped_after_apply) == (1, 1)


async def test_attio_revoked_keys_and_faults_over_the_admin_api(
    attio: tuple[AttioSim, str, aiohttp.ClientSession],
) -> None:
    sim, base, http = attio
    admin = base.removesuffix("/v2") + "/_sim/faults"
    update = {"revoke_keys": [ATTIO_KEY], "fail_rate": 0.5, "latency": 0.01,
              "short_page_rate": 0.1, "seed": 2}
    async with http.post(admin, json=update) as response:
        settings: dict[str, Any] = await response.json()
    assert settings["revoked_keys"] == 1 and settings["latency"] == [0.01, 0.01]
    assert ATTIO_KEY not in str(settings)  # never shown
    assert sim.faults.revoked_keys == {ATTIO_KEY}
    async with http.get(f"{base}/self") as response:
        assert response.status == 401
    async with http.post(admin, json={"restore_keys": [ATTIO_KEY], "clear": True}) as response:
        assert (await response.json())["fail_rate"] == 0.0
    async with http.get(f"{base}/self") as response:
        assert response.status == 200
    for bad in ({"fail_rate": -0.1}, {"bogus": 1}, {"webhook_mode": "lose"}):
        async with http.post(admin, json=bad) as response:
            assert response.status == 400, bad


async def test_attio_webhooks_expired_removed_and_failed_deliveries_redelivered(
    attio: tuple[AttioSim, str, aiohttp.ClientSession],
) -> None:
    """1. a webhook whose receiver fails every attempt of the first message
    2. `redeliver-failed` sends it once more: acknowledged
    3. the webhook expires (inactive): a change is not delivered at all
    4. it is removed from the admin API
    Result: statuses as scripted; nothing is left unacknowledged; no webhook left."""
    sim, base, http = attio
    root = base.removesuffix("/v2")
    attempts = sim.config.webhook_max_attempts
    async with receiver(statuses=[500] * attempts) as hook:
        subs = [{"event_type": "record.updated", "filter": None}]
        async with http.post(f"{base}/webhooks",
                             json={"data": {"target_url": hook.url, "subscriptions": subs}}) as r:
            webhook_id = (await r.json())["data"]["id"]["webhook_id"]
        person = next(iter(sim.people)).record_id
        sim.update_person(person, job_title="First")
        await sim.deliver_pending()
        assert len(sim.deliverer.unacknowledged()) == 1
        async with http.post(f"{root}/_sim/webhooks/redeliver-failed") as response:
            assert await response.json() == {"statuses": [200]}
        assert sim.deliverer.unacknowledged() == []

        async with http.post(f"{root}/_sim/webhooks/{webhook_id}/expire") as response:
            assert response.status == 200
        sent = len(sim.deliverer.sent)
        sim.update_person(person, job_title="Second")
        await sim.deliver_pending()
        assert len(sim.deliverer.sent) == sent  # an inactive webhook gets nothing
        async with http.delete(f"{root}/_sim/webhooks/{webhook_id}") as response:
            assert response.status == 200
        assert sim.webhooks == {}
