"""Pipedrive simulator webhooks: create/list/delete rules, v2 deliveries with Basic auth
for API and app changes, retries with the same event id, merges as delete + change,
subscription filters; and the end-to-end test driver built on the simulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sim.webhook_support import Receiver, receiver
from support.crm_drivers.pipedrive import start

from crmsync.sim.pipedrive import PipedriveSim, PipedriveSimConfig, run_pipedrive_simulator
from crmsync.sim.quo.testing import SimApi

KEY = "pipedrive-test-key"
CREDENTIALS = ("crmsync", "s3cret-path-token")


@dataclass
class World:
    sim: PipedriveSim
    api: SimApi
    hook: Receiver


@pytest.fixture
async def world() -> AsyncIterator[World]:
    # 41 webhook creations in one test: above the default burst of 40 per 2 s.
    config = PipedriveSimConfig(people=10, webhook_retry_delays=(0.01, 0.02), burst_limit=100)
    async with (
        receiver() as hook,
        run_pipedrive_simulator(config=config) as (sim, url),
        aiohttp.ClientSession() as session,
    ):
        yield World(sim, SimApi(session, url, None, headers={"x-api-token": KEY}), hook)


async def subscribe(w: World, action: str = "*", **extra: Any) -> dict[str, Any]:
    answer = await w.api.post("/v1/webhooks", json={
        "subscription_url": w.hook.url, "event_action": action, "event_object": "person",
        "version": "2.0", "http_auth_user": CREDENTIALS[0],
        "http_auth_password": CREDENTIALS[1], "name": "Quo - person", **extra})
    assert answer.status == 201, answer.json
    data: dict[str, Any] = answer.json["data"]
    return data


async def test_create_list_delete_and_the_rules(world: World) -> None:
    hook = await subscribe(world)
    assert hook["http_auth_password"] == "*****" and hook["is_active"] == 1
    assert hook["version"] == "2.0" and hook["http_auth_user"] == "crmsync"
    (listed,) = (await world.api.get("/v1/webhooks")).json["data"]
    assert listed["id"] == hook["id"] and listed["http_auth_password"] == "*****"
    for bad in ({"subscription_url": "ftp://x/hook"}, {"event_action": "updated"},
                {"event_object": "people"}, {"version": "1.0"}, {"user_id": 1}):
        answer = await world.api.post("/v1/webhooks", json={
            "subscription_url": world.hook.url, "event_action": "*",
            "event_object": "person", **bad})
        assert answer.status == 400, bad
        assert next(iter(bad)) in answer.json["error"]
    assert (await world.api.delete(f"/v1/webhooks/{hook['id']}")).status == 200
    assert (await world.api.delete(f"/v1/webhooks/{hook['id']}")).status == 404
    assert (await world.api.get("/v1/webhooks")).json["data"] == []


async def test_at_most_40_webhooks_per_user(world: World) -> None:
    for _ in range(40):
        await subscribe(world)
    answer = await world.api.post("/v1/webhooks", json={
        "subscription_url": world.hook.url, "event_action": "*", "event_object": "person"})
    assert answer.status == 400 and "40" in answer.json["error"]


async def test_api_changes_are_delivered_with_basic_auth(world: World) -> None:
    hook = await subscribe(world)
    created = await world.api.post("/api/v2/persons", json={"name": "Ada Lovelace"})
    pid = created.json["data"]["id"]
    got = await world.hook.next()
    assert got.credentials == CREDENTIALS
    body = got.json
    assert body["previous"] is None
    assert set(body["data"]) == {"id", "name", "first_name", "last_name", "emails", "phones",
                                 "org_id", "update_time"}
    meta = body["meta"]
    assert {k: meta[k] for k in ("action", "entity", "entity_id", "change_source", "attempt",
                                 "webhook_id", "version", "host", "company_id")} == {
        "action": "create", "entity": "person", "entity_id": str(pid),
        "change_source": "api", "attempt": 1, "webhook_id": str(hook["id"]),
        "version": "2.0", "host": "acme.pipedrive.com", "company_id": "777"}
    await world.api.patch(f"/api/v2/persons/{pid}", json={"job_title": "CTO"})
    change = (await world.hook.next()).json
    assert change["meta"]["action"] == "change" and change["previous"] == {"job_title": None}
    await world.api.delete(f"/api/v2/persons/{pid}")
    deleted = (await world.hook.next()).json
    assert deleted["data"] is None and deleted["previous"]["id"] == pid
    assert len({b["meta"]["id"] for b in (body, change, deleted)}) == 3


async def test_app_changes_are_delivered_too(world: World) -> None:
    await subscribe(world)
    pid = world.sim.add_person(first_name="Žiga", last_name="Novak", phones=["040 123 456"])
    world.sim.update_person(pid, phones=["+386 40 123 456"])
    world.sim.update_person(pid, phones=["+386 40 123 456"])  # no change: no webhook
    world.sim.delete_person(pid)
    bodies = [(await world.hook.next()).json for _ in range(3)]
    assert [b["meta"]["action"] for b in bodies] == ["create", "change", "delete"]
    assert {b["meta"]["change_source"] for b in bodies} == {"app"}
    assert bodies[1]["previous"] == {"phones": [
        {"value": "040 123 456", "primary": True, "label": "mobile"}]}
    await world.sim.deliver_pending()
    assert world.hook.drained() == []


async def test_failed_deliveries_are_retried_with_the_same_event_id(world: World) -> None:
    await subscribe(world)
    world.hook.statuses = [500, 503]
    world.sim.update_person("1", job_title="Chief Retry Officer")
    attempts = [(await world.hook.next()).json["meta"] for _ in range(3)]
    assert [m["attempt"] for m in attempts] == [1, 2, 3]
    assert len({m["id"] for m in attempts}) == 1
    await world.sim.deliver_pending()
    assert [a.status for a in world.sim.hooks.attempts] == [500, 503, 200]
    (listed,) = (await world.api.get("/v1/webhooks")).json["data"]
    assert listed["last_http_status"] == 200


async def test_gives_up_after_the_last_retry(world: World) -> None:
    await subscribe(world)
    world.hook.statuses = [500] * 5
    world.sim.delete_person("2")
    await world.sim.deliver_pending()
    assert [a.attempt for a in world.sim.hooks.attempts] == [1, 2, 3]
    assert not world.sim.hooks.acknowledged()


async def test_merge_sends_delete_then_change(world: World) -> None:
    await subscribe(world)
    sim = world.sim
    loser = sim.add_person(name="Dup One", phones=["+1 646 555 0101"], notify=False)
    survivor = sim.add_person(name="Dup Two", emails=["two@x.io"], notify=False)
    note = await world.api.post("/v1/notes", json={"content": "<p>hi</p>",
                                                   "person_id": int(loser)})
    assert note.status == 200
    async with world.api.session.post(f"{world.api.base_url}/_sim/persons/{loser}/merge",
                                      json={"into": survivor}) as answer:
        assert answer.status == 200
    first, second = (await world.hook.next()).json, (await world.hook.next()).json
    assert (first["meta"]["action"], first["meta"]["entity_id"]) == ("delete", loser)
    assert (second["meta"]["action"], second["meta"]["entity_id"]) == ("change", survivor)
    assert first["meta"]["correlation_id"] == second["meta"]["correlation_id"]
    assert [p["value"] for p in second["data"]["phones"]] == ["+1 646 555 0101"]
    assert (await world.api.get(f"/api/v2/persons/{loser}")).status == 404
    assert [n["content"] for n in sim.notes_of(survivor)] == ["<p>hi</p>"]


async def test_subscriptions_filter_and_inactive_webhooks_get_nothing(world: World) -> None:
    deletes = await subscribe(world, action="delete")
    world.sim.update_person("3", job_title="Ignored")
    world.sim.delete_person("3")
    got = await world.hook.next()
    assert got.json["meta"]["action"] == "delete"
    async with world.api.session.post(
        f"{world.api.base_url}/_sim/webhooks/{deletes['id']}/deactivate"
    ) as answer:
        assert answer.status == 200
    world.sim.delete_person("4")
    await world.sim.deliver_pending()
    assert world.hook.drained() == []


async def test_queued_deliveries_wait_for_deliver_pending() -> None:
    config = PipedriveSimConfig(people=2, auto_deliver_webhooks=False)
    async with (
        receiver() as hook,
        run_pipedrive_simulator(config=config) as (sim, url),
        aiohttp.ClientSession() as session,
    ):
        w = World(sim, SimApi(session, url, None, headers={"x-api-token": KEY}), hook)
        await subscribe(w)
        sim.update_person("1", job_title="Queued")
        assert len(sim.hooks.pending) == 1 and hook.inbox.empty()
        await sim.deliver_pending()
        assert (await hook.next()).json["meta"]["action"] == "change"


# --- the end-to-end driver ------------------------------------------------------------------


async def test_driver_reads_the_sim_like_crmsync_should() -> None:
    async with start(40, 3) as driver:
        sim = driver.sim
        assert driver.name == "pipedrive" and driver.webhook_secret is None
        assert driver.base_url.startswith("http://127.0.0.1:")
        pid = driver.add_person(first_name="Ada", last_name="Lovelace",
                                emails=[" Ada@Example.com "], phones=["(415) 555-0134", "junk"],
                                job_title="Analyst")
        expected = driver.expected_contact(pid)
        assert expected.external_id == pid
        assert expected.source_url == f"https://acme.pipedrive.com/person/{pid}"
        assert expected.phones == ("+14155550134",)
        assert expected.emails == ("Ada@Example.com",)
        assert (expected.first_name, expected.last_name, expected.role) == (
            "Ada", "Lovelace", "Analyst")
        name_only = sim.facts.of("name_only")[0]
        only = driver.expected_contact(name_only)
        assert only.first_name is None and only.full_name
        with_org = sim.facts.with_org[0]
        org_id = sim.live(with_org).org_id
        assert org_id is not None and driver.person(with_org).company == sim.orgs[org_id].name
        driver.update_job_title(pid, "CTO")
        assert driver.person(pid).job_title == "CTO"
        headers, body = driver.forged_webhook("http://127.0.0.1:1/webhooks/x")
        assert headers["Authorization"].startswith("Basic ")
        assert json.loads(body)["meta"]["action"] == "change"
        driver.delete_person(pid)
        assert pid not in driver.record_ids() and driver.newest_first()[0] != pid
        assert driver.requests_made() == 0 and driver.rate_limited() == 0
        assert driver.notes_of(with_org) == []
