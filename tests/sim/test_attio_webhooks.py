"""Attio simulator webhooks: CRUD, HMAC-signed delivery to a real receiver, retries with a
stable Idempotency-Key, duplicate and lost deliveries, subscription filters."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sim.webhook_support import Received, Receiver, receiver

from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator

AUTH = {"Authorization": "Bearer attio-test-key"}
RECORD_EVENTS = ("record.created", "record.updated", "record.deleted")


@dataclass
class World:
    sim: AttioSim
    base: str
    http: aiohttp.ClientSession
    hook: Receiver


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with (
        receiver() as hook,
        run_attio_simulator(config=AttioSimConfig(people=10)) as (sim, base),
        aiohttp.ClientSession(headers=AUTH) as http,
    ):
        yield World(sim, base, http, hook)


async def create_webhook(
    w: World, events: tuple[str, ...] = RECORD_EVENTS, flt: Any = None
) -> dict[str, Any]:
    subs = [{"event_type": e, "filter": flt} for e in events]
    async with w.http.post(
        f"{w.base}/webhooks", json={"data": {"target_url": w.hook.url, "subscriptions": subs}}
    ) as resp:
        assert resp.status == 200
        data: dict[str, Any] = (await resp.json())["data"]
        return data


def signature_ok(secret: str, received: Received) -> bool:
    expected = hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(received.headers["Attio-Signature"], expected)


async def test_create_returns_secret_once_and_crud(world: World) -> None:
    hook = await create_webhook(world)
    webhook_id = hook["id"]["webhook_id"]
    assert hook["status"] == "active" and len(hook["secret"]) >= 32
    assert hook["id"]["workspace_id"] == world.sim.workspace.workspace_id
    async with world.http.get(f"{world.base}/webhooks") as resp:
        (listed,) = (await resp.json())["data"]
    assert "secret" not in listed and listed["id"]["webhook_id"] == webhook_id
    async with world.http.patch(
        f"{world.base}/webhooks/{webhook_id}",
        json={"data": {"subscriptions": [{"event_type": "record.deleted", "filter": None}]}},
    ) as resp:
        patched = (await resp.json())["data"]
    assert [s["event_type"] for s in patched["subscriptions"]] == ["record.deleted"]
    assert "secret" not in patched
    async with world.http.delete(f"{world.base}/webhooks/{webhook_id}") as resp:
        assert resp.status == 200 and await resp.json() == {}
    async with world.http.get(f"{world.base}/webhooks/{webhook_id}") as resp:
        assert resp.status == 404


@pytest.mark.parametrize(
    "data",
    [
        {"target_url": "http://example.com/hook", "subscriptions": []},
        {"target_url": "ftp://127.0.0.1/x", "subscriptions": []},
        {"target_url": "https://example.com/hook",
         "subscriptions": [{"event_type": "record.exploded", "filter": None}]},
        {"target_url": "https://example.com/hook",
         "subscriptions": [{"event_type": "record.created"}]},
        {"target_url": "https://example.com/hook", "subscriptions": [
            {"event_type": "record.created", "filter": {"$and": [{"field": "x"}]}}]},
    ],
)
async def test_invalid_webhooks_are_rejected(world: World, data: dict[str, Any]) -> None:
    async with world.http.post(f"{world.base}/webhooks", json={"data": data}) as resp:
        assert resp.status == 400
        assert (await resp.json())["code"] == "validation_type"


async def test_update_person_delivers_signed_record_updated(world: World) -> None:
    hook = await create_webhook(world)
    person = world.sim.people.ordered()[0].record_id
    assert world.sim.update_person(person, job_title="Chief Phone Officer") == ["job_title"]
    got = await world.hook.next()
    assert signature_ok(hook["secret"], got)
    assert got.headers["X-Attio-Signature"] == got.headers["Attio-Signature"]
    assert got.headers["Idempotency-Key"]
    body = got.json
    assert body["webhook_id"] == hook["id"]["webhook_id"]
    (event,) = body["events"]
    assert event["event_type"] == "record.updated"
    assert event["id"] == {
        "workspace_id": world.sim.workspace.workspace_id,
        "object_id": world.sim.workspace.object_id("people"),
        "record_id": person,
        "attribute_id": world.sim.workspace.attribute_id("people", "job_title"),
    }
    assert event["actor"]["type"] == "workspace-member"
    await world.sim.deliver_pending()
    assert [a.status for a in world.sim.deliverer.attempts] == [200]


async def test_create_and_delete_events(world: World) -> None:
    await create_webhook(world)
    record_id = world.sim.add_person(first_name="Zoë", last_name="O'Brien",
                                     phones=["+14155550134"])
    created = (await world.hook.next()).json["events"][0]
    assert created["event_type"] == "record.created"
    assert created["id"]["record_id"] == record_id and "attribute_id" not in created["id"]
    world.sim.delete_person(record_id)
    deleted = (await world.hook.next()).json["events"][0]
    assert (deleted["event_type"], deleted["id"]["record_id"]) == ("record.deleted", record_id)


async def test_one_delivery_per_changed_attribute(world: World) -> None:
    await create_webhook(world, events=("record.updated",))
    person = world.sim.people.ordered()[1].record_id
    changed = world.sim.update_person(person, first_name="José", emails=["jose@example.es"])
    assert sorted(changed) == ["email_addresses", "name"]
    first, second = await world.hook.next(), await world.hook.next()
    attribute_ids = {r.json["events"][0]["id"]["attribute_id"] for r in (first, second)}
    assert attribute_ids == {world.sim.workspace.attribute_id("people", a) for a in changed}
    assert first.headers["Idempotency-Key"] != second.headers["Idempotency-Key"]


async def test_failed_delivery_is_retried_with_the_same_idempotency_key(world: World) -> None:
    hook = await create_webhook(world)
    world.hook.statuses = [500]
    world.sim.update_person(world.sim.people.ordered()[0].record_id, job_title="CFO")
    first, retry = await world.hook.next(), await world.hook.next()
    assert first.body == retry.body
    assert first.headers["Idempotency-Key"] == retry.headers["Idempotency-Key"]
    assert signature_ok(hook["secret"], retry)
    await world.sim.deliver_pending()
    assert [(a.attempt, a.status) for a in world.sim.deliverer.attempts] == [(1, 500), (2, 200)]


async def test_exhausted_retries_degrade_the_webhook(world: World) -> None:
    hook = await create_webhook(world)
    world.hook.statuses = [503] * world.sim.config.webhook_max_attempts
    world.sim.update_person(world.sim.people.ordered()[0].record_id, job_title="CFO")
    await world.sim.deliver_pending()
    assert world.sim.webhooks[hook["id"]["webhook_id"]].status == "degraded"


async def test_redeliver_last_sends_an_identical_duplicate(world: World) -> None:
    await create_webhook(world)
    world.sim.update_person(world.sim.people.ordered()[2].record_id, job_title="CEO")
    original = await world.hook.next()
    await world.sim.deliver_pending()
    assert await world.sim.redeliver_last() == 200
    duplicate = await world.hook.next()
    assert duplicate.body == original.body
    assert duplicate.headers["Idempotency-Key"] == original.headers["Idempotency-Key"]
    assert world.sim.deliverer.attempts[-1].redelivery


async def test_dropped_webhooks_are_never_sent(world: World) -> None:
    await create_webhook(world)
    world.sim.deliverer.drop_next = 1
    person = world.sim.people.ordered()[0].record_id
    world.sim.update_person(person, job_title="Lost")
    world.sim.update_person(person, job_title="Found")
    await world.sim.deliver_pending()
    got = await world.hook.next()
    assert world.hook.inbox.empty()
    assert len(world.sim.deliverer.dropped) == 1
    assert got.json["events"][0]["id"]["record_id"] == person
    assert len(world.sim.deliverer.attempts) == 1


async def test_subscription_filter_and_manual_delivery() -> None:
    config = AttioSimConfig(people=3, auto_deliver_webhooks=False)
    async with (
        receiver() as hook,
        run_attio_simulator(config=config) as (sim, base),
        aiohttp.ClientSession(headers=AUTH) as http,
    ):
        w = World(sim, base, http, hook)
        people_object = sim.workspace.object_id("people")
        not_people = {"$and": [{"field": "id.object_id", "operator": "not_equals",
                                "value": people_object}]}
        only_people = {"$or": [{"field": "id.object_id", "operator": "equals",
                                "value": people_object}]}
        await create_webhook(w, flt=not_people)
        wanted = await create_webhook(w, flt=only_people)
        sim.update_person(sim.people.ordered()[0].record_id, job_title="Buyer")
        assert hook.inbox.empty() and len(sim.deliverer.pending) == 1
        await sim.deliver_pending()
        got = hook.inbox.get_nowait()
        assert got.json["webhook_id"] == wanted["id"]["webhook_id"]
        assert hook.inbox.empty()


async def test_admin_routes_drive_webhooks(world: World) -> None:
    await create_webhook(world)
    admin = world.base.removesuffix("/v2") + "/_sim"
    person = world.sim.people.ordered()[0].record_id
    async with aiohttp.ClientSession() as anonymous:
        async with anonymous.patch(f"{admin}/people/{person}",
                                   json={"full_name": "Ana Novak"}) as resp:
            assert (await resp.json())["changed"] == ["name"]
        assert (await world.hook.next()).json["events"][0]["event_type"] == "record.updated"
        async with anonymous.post(f"{admin}/webhooks/deliver") as resp:
            assert (await resp.json())["attempts"] == 1
        async with anonymous.post(f"{admin}/webhooks/redeliver-last") as resp:
            assert (await resp.json())["status"] == 200
        async with anonymous.get(f"{admin}/stats") as resp:
            stats = await resp.json()
    assert [d["status"] for d in stats["deliveries"]] == [200, 200]
    assert stats["webhooks"] == 1
