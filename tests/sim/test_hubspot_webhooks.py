"""HubSpot simulator webhooks: the app's target URL, batched arrays of events, v3
signatures checked by an independent computation, retries with the same eventIds and
a higher attemptNumber, what is not retried, and the events of each kind of change."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from sim.webhook_support import Received, Receiver, receiver

from crmsync.sim.hubspot import HubSpotSim, HubSpotSimConfig, run_hubspot_simulator, sign_v3

KEY = "hubspot-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SECRET = "hubspot-app-secret"
FIVE_MINUTES_MS = 300_000


def app_receiver() -> contextlib.AbstractAsyncContextManager[Receiver]:
    """The app's webhook target: a path and a query of its own, as a tenant's would be."""
    return receiver("/hooks/hubspot", query="tenant=acme")


@dataclass
class World:
    sim: HubSpotSim
    base: str
    http: aiohttp.ClientSession
    hook: Receiver


def config(**changes: Any) -> HubSpotSimConfig:
    return HubSpotSimConfig(people=10, webhook_retry_schedule=(0.02, 0.02), **changes)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with (
        app_receiver() as hook,
        run_hubspot_simulator(config=config()) as (sim, base),
        aiohttp.ClientSession(headers=AUTH) as http,
    ):
        sim.point_webhooks(hook.url)
        yield World(sim, base, http, hook)


def v3_valid(received: Received, secret: str = SECRET) -> bool:
    """HubSpot's v3 check, written out here rather than borrowed from the simulator."""
    timestamp = received.headers["X-HubSpot-Request-Timestamp"]
    message = f"POST{received.url}".encode() + received.body + timestamp.encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    fresh = abs(time.time() * 1000 - int(timestamp)) < FIVE_MINUTES_MS
    return fresh and hmac.compare_digest(
        base64.b64encode(digest).decode(), received.headers["X-HubSpot-Signature-v3"])


async def test_app_change_arrives_signed_v3(world: World) -> None:
    record_id = world.sim.record_ids()[0]
    world.sim.update_contact(record_id, jobtitle="CTO")
    got = await world.hook.next()
    assert got.url == world.hook.url  # the query string is part of the signed URI
    assert got.headers["X-HubSpot-Signature-Version"] == "v3"
    assert got.headers["Content-Type"] == "application/json"
    assert v3_valid(got)
    assert not v3_valid(got, secret="another-secret")
    (event,) = got.events
    assert event == {
        "eventId": event["eventId"], "subscriptionId": event["subscriptionId"],
        "portalId": 62515, "appId": 98765, "occurredAt": event["occurredAt"],
        "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
        "objectId": int(record_id), "propertyName": "jobtitle", "propertyValue": "CTO",
        "changeSource": "CRM_UI", "sourceId": "userId:1",
    }
    assert abs(event["occurredAt"] - time.time() * 1000) < 5000


def test_sign_v3_matches_hubspot_documented_scheme() -> None:
    body = b'[{"eventId":1}]'
    expected = base64.b64encode(hmac.new(
        b"s3cret", b"POSThttps://example.com/hook?x=1" + body + b"1700000000000",
        hashlib.sha256).digest()).decode()
    assert sign_v3("s3cret", "POST", "https://example.com/hook?x=1", body,
                   1_700_000_000_000) == expected
    assert sign_v3("s3cret", "POST", "https://example.com/hook?x=1", body.decode(),
                   1_700_000_000_000) == expected


async def test_events_are_batched_into_one_array(world: World) -> None:
    sim = world.sim
    record_id = sim.add_contact(firstname="Neža", email="neza@example.si",
                                phone="+386 40 123 456", website="neza.si")
    sim.update_contact(record_id, jobtitle="CEO", lastname="Kovač")
    got = await world.hook.next()
    kinds = [(e["subscriptionType"], e.get("propertyName")) for e in got.events]
    assert kinds == [
        ("contact.creation", None), ("contact.propertyChange", "email"),
        ("contact.propertyChange", "firstname"), ("contact.propertyChange", "phone"),
        ("contact.propertyChange", "jobtitle"), ("contact.propertyChange", "lastname"),
    ]  # website: not subscribed
    assert {e["objectId"] for e in got.events} == {int(record_id)}
    assert len({e["eventId"] for e in got.events}) == 6
    await sim.hooks.drain()
    assert world.hook.empty()


async def test_batches_hold_at_most_max_batch_events() -> None:
    async with (
        app_receiver() as hook,
        run_hubspot_simulator(config=config(webhook_max_batch=4)) as (sim, _),
    ):
        sim.point_webhooks(hook.url)
        for record_id in sim.record_ids()[:9]:
            sim.update_contact(record_id, jobtitle="Batched")
        await sim.hooks.drain()
        sizes = [len((await hook.next()).events) for _ in sim.hooks.batches]
        assert sorted(sizes) == [1, 4, 4]


async def test_failed_batches_are_retried_with_the_same_event_ids(world: World) -> None:
    world.hook.statuses = [500, 429]
    world.sim.update_contact(world.sim.record_ids()[0], jobtitle="Retry me")
    first, second, third = [await world.hook.next() for _ in range(3)]
    ids = [[e["eventId"] for e in r.events] for r in (first, second, third)]
    assert ids[0] == ids[1] == ids[2]
    assert [r.events[0]["attemptNumber"] for r in (first, second, third)] == [0, 1, 2]
    assert all(v3_valid(r) for r in (first, second, third))  # re-signed each time
    await world.sim.hooks.drain()
    assert [a.status for a in world.sim.hooks.attempts] == [500, 429, 200]
    assert world.hook.empty()


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405])
async def test_client_errors_are_not_retried(world: World, status: int) -> None:
    world.hook.statuses = [status]
    world.sim.update_contact(world.sim.record_ids()[0], jobtitle="Once")
    await world.hook.next()
    await world.sim.hooks.drain()
    assert [a.status for a in world.sim.hooks.attempts] == [status]


async def test_unreachable_target_gives_up_after_the_schedule() -> None:
    async with run_hubspot_simulator(config=config()) as (sim, _):
        sim.point_webhooks("http://127.0.0.1:9/nobody-listens")
        sim.update_contact(sim.record_ids()[0], jobtitle="Lost")
        await sim.hooks.drain()
        attempts = sim.hooks.attempts
        assert [a.attempt_number for a in attempts] == [0, 1, 2]
        assert all(a.status is None and a.error for a in attempts)


async def test_api_writes_deletes_restores_and_merges(world: World) -> None:
    sim, http, base = world.sim, world.http, world.base
    async with http.post(f"{base}/crm/v3/objects/contacts", json={"properties": {
            "email": "api@example.com", "hs_country_region_code": "SI"}}) as resp:
        made = await resp.json()
    got = await world.hook.next()
    assert [(e["subscriptionType"], e["changeSource"], e["sourceId"]) for e in got.events] == [
        ("contact.creation", "INTEGRATION", "98765"),
        ("contact.propertyChange", "INTEGRATION", "98765"),  # email; the region: unsubscribed
    ]
    async with http.patch(f"{base}/crm/v3/objects/contacts/{made['id']}",
                          json={"properties": {"email": ""}}) as resp:
        assert resp.status == 200
    (cleared,) = (await world.hook.next()).events
    assert (cleared["propertyName"], cleared["propertyValue"]) == ("email", "")
    async with http.delete(f"{base}/crm/v3/objects/contacts/{made['id']}") as resp:
        assert resp.status == 204
    (deleted,) = (await world.hook.next()).events
    assert deleted["subscriptionType"] == "contact.deletion"
    sim.restore_contact(made["id"])
    (restored,) = (await world.hook.next()).events
    assert restored["subscriptionType"] == "contact.restore"
    primary, merged = sim.record_ids()[:2]
    sim.merge_contacts(primary, merged)
    events = (await world.hook.next()).events
    merge = events[0]
    assert merge["subscriptionType"] == "contact.merge"
    assert (merge["objectId"], merge["primaryObjectId"], merge["mergedObjectIds"],
            merge["newObjectId"]) == (int(primary), int(primary), [int(merged)], int(primary))
    assert all(e["subscriptionType"] == "contact.propertyChange" for e in events[1:])


async def test_nothing_is_sent_without_a_target_and_drops_are_lost() -> None:
    async with app_receiver() as hook, run_hubspot_simulator(config=config()) as (sim, _):
        sim.update_contact(sim.record_ids()[0], jobtitle="Unheard")
        assert len(sim.hooks.events) == 1 and not sim.hooks.pending
        sim.point_webhooks(hook.url)
        sim.hooks.drop_next = 1
        sim.update_contact(sim.record_ids()[0], jobtitle="Dropped")
        await sim.hooks.drain()
        sim.update_contact(sim.record_ids()[0], jobtitle="Heard", notify=True)
        sim.update_contact(sim.record_ids()[1], jobtitle="Silent", notify=False)
        await sim.hooks.drain()
        (event,) = (await hook.next()).events
        assert event["propertyValue"] == "Heard"
        assert len(sim.hooks.dropped) == 1 and hook.empty()


async def test_admin_edit_in_the_app_sends_a_webhook(world: World) -> None:
    record_id = world.sim.record_ids()[2]
    async with world.http.patch(f"{world.base}/_sim/contacts/{record_id}",
                                json={"jobtitle": "CTO"}) as resp:
        assert resp.status == 200
    async with world.http.post(f"{world.base}/_sim/webhooks/drain") as resp:
        assert (await resp.json())["attempts"] == 1
    (event,) = (await world.hook.next()).events
    assert (event["objectId"], event["propertyValue"]) == (int(record_id), "CTO")
