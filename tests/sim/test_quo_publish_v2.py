"""Quo simulator: one occurrence published through both webhook systems, the one-call
helpers (SMS, the call lifecycle, contacts edited in the app), contact events fired by
API writes, and the `/_sim` routes that do the same for subprocess tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sim.quo_v2_support import CALLER, FAST_RETRIES, QuoV2, Receiver, quo_v2, receiver
from standardwebhooks.webhooks import Webhook

from crmsync.quo.signature import HEADER, verify
from crmsync.sim.quo import QuoSimConfig
from crmsync.sim.quo.testing import contact_body, wait_until

CALL_EVENTS = [
    "call.completed", "call.missed", "call.voicemail.completed", "call.recording.completed",
    "call.summary.completed", "call.transcript.completed",
]
CONTACT_EVENTS = ["contact.updated", "contact.deleted"]


@pytest.fixture
async def quo() -> AsyncIterator[QuoV2]:
    async with quo_v2() as env:
        yield env


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver() as target:
        yield target


LEGACY_EVENTS = {
    "messages": ["message.received", "message.delivered"],
    "calls": ["call.completed", "call.recording.completed"],
    "call-summaries": ["call.summary.completed"],
}


async def _legacy(quo: QuoV2, family: str, url: str) -> dict[str, Any]:
    body = {"url": url, "events": LEGACY_EVENTS[family]}
    response = await quo.v1.post(f"/webhooks/{family}", json=body)
    assert response.status == 201
    created: dict[str, Any] = response.json["data"]
    return created


# -- both systems -----------------------------------------------------------------------


async def test_an_sms_goes_through_both_systems_each_in_its_format(
    quo: QuoV2, hook: Receiver
) -> None:
    async with receiver() as legacy_hook:
        legacy = await _legacy(quo, "messages", legacy_hook.url)
        new = await quo.webhook(hook.url, ["message.received"])
        publication = await quo.sim.sms(CALLER, "hello both", phone_number_id=None)
        [old] = legacy_hook.received
    [fresh] = hook.received
    assert publication.ok and publication.legacy is not None
    verify(legacy["key"], old.headers[HEADER], old.body)
    assert "webhook-id" not in old.headers
    envelope = Webhook(new["key"]).verify(fresh.body, fresh.headers)
    legacy_object = old.json["data"]["object"]
    resource = envelope["data"]["resource"]
    assert old.json["object"] == "event" and old.json["apiVersion"] == "v4"
    assert envelope["apiVersion"] == "2026-03-30" and "object" not in envelope
    # Same occurrence: same message id and time; the event ids differ per system.
    assert legacy_object["id"] == resource["id"] == publication.resource["id"]
    assert legacy_object["createdAt"] == resource["createdAt"]
    assert legacy_object["text"] == resource["text"] == "hello both"
    assert old.json["id"] != envelope["id"] == publication.event_id
    context = envelope["data"]["context"]
    assert context["senderIdentifier"] == CALLER == legacy_object["from"]
    assert context["phoneNumberId"] == legacy_object["phoneNumberId"]
    assert context["orgId"] == quo.sim.workspace.org_id
    assert context["contacts"] == {"ids": [], "lookupStatus": "none"}
    assert envelope["data"]["links"]["quo"].startswith("https://my.quo.com/inbox/")
    assert publication.envelope == envelope
    assert quo.sim.deliverer.history[-1] is publication.legacy


async def test_an_outgoing_sms_is_message_delivered(quo: QuoV2, hook: Receiver) -> None:
    await quo.webhook(hook.url, ["message.received", "message.delivered"])
    contact = quo.sim.contacts.create(
        {"defaultFields": {"firstName": "Ada", "phoneNumbers": [{"name": "m", "value": CALLER}]}}
    )
    publication = await quo.sim.sms(CALLER, "on my way", direction="outgoing")
    envelope = hook.received[0].json
    assert envelope["type"] == "message.delivered"
    assert envelope["data"]["resource"]["direction"] == "outgoing"
    assert envelope["data"]["context"]["recipientIdentifiers"] == [CALLER]
    assert envelope["data"]["context"]["contacts"] == {
        "ids": [contact["id"]], "lookupStatus": "matched",
    }
    assert publication.legacy is None  # no legacy webhook: nothing built for it


async def test_resource_ids_filter_message_and_call_events_only(
    quo: QuoV2, hook: Receiver
) -> None:
    first, second = (line.id for line in quo.sim.workspace.lines)
    await quo.webhook(hook.url, ["message.received", "contact.updated"], resourceIds=[second])
    skipped = await quo.sim.sms(CALLER, "line one", phone_number_id=first)
    taken = await quo.sim.sms(CALLER, "line two", phone_number_id=second)
    contact = await quo.sim.create_contact_in_app(firstName="Workspace", lastName="Wide")
    assert skipped.deliveries == [] and len(taken.deliveries) == 1
    assert len(contact.deliveries) == 1  # contact events ignore resourceIds


async def test_publish_takes_a_given_event_id_for_every_webhook(
    quo: QuoV2, hook: Receiver
) -> None:
    for _ in range(2):
        await quo.webhook(hook.url, ["call.missed"])
    resource = {"id": "ACcustom", "createdAt": "2026-04-13T12:00:00.000Z",
                "updatedAt": "2026-04-13T12:00:00.000Z"}
    publication = await quo.sim.publish(
        "call.missed", resource, context={"phoneNumberId": None}, event_id="EVfixed"
    )
    assert len(publication.deliveries) == 2
    assert [r.json["id"] for r in hook.received] == ["EVfixed", "EVfixed"]
    assert hook.received[0].json["data"] == {
        "resource": resource, "context": {"phoneNumberId": None}, "links": {"quo": None},
    }
    assert {d.resource_id for d in publication.deliveries} == {"ACcustom"}


# -- the call lifecycle -----------------------------------------------------------------


async def test_the_call_lifecycle_helpers(quo: QuoV2, hook: Receiver) -> None:
    await quo.webhook(hook.url, CALL_EVENTS)
    call = quo.sim.add_call([CALLER], duration=42)
    await quo.sim.summary(call, ["Asked about pricing."], next_steps=["Send a quote."])
    await quo.sim.transcript(call, [("Hello?", CALLER), ("Hi, Quo here.", None)])
    await quo.sim.recording(call)
    await quo.sim.call_completed(call)
    by_type = {r.json["type"]: r.json["data"] for r in hook.received}
    completed = by_type["call.completed"]["resource"]
    assert completed["status"] == "answered" and completed["duration"] == 42
    assert completed["hasVoicemail"] is False
    assert by_type["call.completed"]["context"]["participants"] == {
        "workspace": [quo.sim.workspace.lines[0].number], "external": [CALLER],
        "resolution": "available",
    }
    summary = by_type["call.summary.completed"]["resource"]
    assert summary["callId"] == call["id"] and "id" not in summary
    assert summary["nextSteps"] == ["Send a quote."]
    dialogue = by_type["call.transcript.completed"]["resource"]["dialogue"]
    assert [(d["identifier"], d["userId"] is None) for d in dialogue] == [
        (CALLER, True), (None, False),
    ]
    [recording] = by_type["call.recording.completed"]["resource"]["recordings"]
    assert recording["id"].startswith("CR")
    for path in (f"/calls/{call['id']}", f"/call-summaries/{call['id']}",
                 f"/call-transcripts/{call['id']}", f"/call-recordings/{call['id']}"):
        assert (await quo.v1.get(path)).status == 200, path
    assert {d.resource_id for d in quo.sim.hooks.log[next(iter(quo.sim.webhooks_v2))].values()
            } == {call["id"]}


async def test_a_missed_call_with_a_voicemail(quo: QuoV2, hook: Receiver) -> None:
    await quo.webhook(hook.url, CALL_EVENTS)
    missed = await quo.sim.call_missed(CALLER)
    call_id = missed.resource["id"]
    voicemail = await quo.sim.voicemail(call_id, transcript="Call me back", duration=12)
    completed = await quo.sim.call_completed(call_id)
    assert set(missed.resource) == {"id", "createdAt", "updatedAt"}
    assert voicemail.resource["callId"] == call_id
    assert voicemail.resource["transcript"] == "Call me back"
    assert voicemail.resource["from"] == CALLER
    assert voicemail.deliveries[0].resource_id == call_id
    assert completed.resource["status"] == "unanswered"
    assert completed.resource["hasVoicemail"] is True
    stored = await quo.v1.get(f"/call-voicemails/{call_id}")
    assert stored.json["data"]["transcript"] == "Call me back"
    assert (await quo.v1.get(f"/calls/{call_id}")).json["data"]["status"] == "missed"
    assert (await quo.v1.get("/call-voicemails/ACnope")).status == 404
    assert (await quo.v1.get("/call-recordings/ACnope")).status == 404


async def test_call_events_reach_legacy_webhooks_too(quo: QuoV2, hook: Receiver) -> None:
    async with receiver() as legacy_hook:
        await _legacy(quo, "calls", legacy_hook.url)
        await _legacy(quo, "call-summaries", legacy_hook.url)
        await quo.webhook(hook.url, CALL_EVENTS)
        call = quo.sim.add_call([CALLER])
        await quo.sim.call_completed(call)
        await quo.sim.summary(call, ["Short call."])
        missed = await quo.sim.call_missed(CALLER)  # no legacy event exists for it
        types = [(r.json["type"], r.json["data"]["object"]["object"])
                 for r in legacy_hook.received]
    assert types == [("call.completed", "call"), ("call.summary.completed", "callSummary")]
    assert missed.legacy is None and len(hook.received) == 3


# -- contacts ---------------------------------------------------------------------------


async def test_an_app_edit_changes_the_contact_and_fires_contact_updated(
    quo: QuoV2, hook: Receiver
) -> None:
    await quo.webhook(hook.url, CONTACT_EVENTS, resourceIds=[quo.sim.workspace.lines[0].id])
    created = await quo.v1.post("/contacts", json=contact_body("crm-1", phones=[CALLER],
                                                              emails=["ada@example.com"]))
    contact_id = created.json["data"]["id"]
    await hook.wait_for(1)  # the API write fired contact.updated too
    publication = await quo.sim.edit_contact_in_app(contact_id, company="Analytical Engines",
                                                     first_name="Augusta")
    stored = (await quo.v1.get(f"/contacts/{contact_id}")).json["data"]
    assert stored["defaultFields"]["company"] == "Analytical Engines"
    assert stored["defaultFields"]["firstName"] == "Augusta"
    assert stored["defaultFields"]["phoneNumbers"] == created.json["data"]["defaultFields"][
        "phoneNumbers"]
    envelope = hook.received[-1].json
    assert envelope["type"] == "contact.updated" and envelope["id"] == publication.event_id
    resource = envelope["data"]["resource"]
    assert resource["company"] == "Analytical Engines" and resource["externalId"] == "crm-1"
    assert resource["phoneNumbers"] == [{"value": CALLER, "type": "phone-number"}]
    assert resource["emails"] == [{"value": "ada@example.com", "type": "email"}]
    assert resource["updatedAt"] == stored["updatedAt"]
    assert envelope["data"]["context"]["sharedWithIds"] == []
    await quo.sim.edit_contact_in_app(contact_id, phoneNumbers=["+14155550100"])
    numbers = hook.received[-1].json["data"]["resource"]["phoneNumbers"]
    assert numbers == [{"value": "+14155550100", "type": "phone-number"}]
    with pytest.raises(TypeError, match="nickname"):
        await quo.sim.edit_contact_in_app(contact_id, nickname="Ada")


async def test_app_creates_and_deletes(quo: QuoV2, hook: Receiver) -> None:
    await quo.webhook(hook.url, CONTACT_EVENTS)
    made = await quo.sim.create_contact_in_app(firstName="Grace", phoneNumbers=[CALLER])
    assert made.resource["source"] is None and made.resource["externalId"] is None
    deleted = await quo.sim.delete_contact_in_app(made.resource["id"])
    assert deleted.resource["id"] == made.resource["id"]
    assert deleted.resource["firstName"] == "Grace"
    assert [r.json["type"] for r in hook.received] == CONTACT_EVENTS
    assert (await quo.v1.get(f"/contacts/{made.resource['id']}")).status == 404


async def test_api_writes_fire_contact_events(quo: QuoV2, hook: Receiver) -> None:
    await quo.webhook(hook.url, CONTACT_EVENTS)
    created = await quo.v1.post("/contacts", json=contact_body("crm-7"))
    contact_id = created.json["data"]["id"]
    await quo.v1.patch(f"/contacts/{contact_id}", json={"defaultFields": {"company": "X"}})
    await quo.v1.delete(f"/contacts/{contact_id}")
    await quo.v1.post("/contacts/bulk", json={"contacts": [contact_body("crm-8")]})
    await quo.admin("POST", "/_sim/contacts/flush")
    received = await hook.wait_for(4)
    assert [r.json["type"] for r in received] == [
        "contact.updated", "contact.updated", "contact.deleted", "contact.updated",
    ]
    assert received[1].json["data"]["resource"]["company"] == "X"
    assert received[3].json["data"]["resource"]["externalId"] == "crm-8"


async def test_api_writes_can_be_silent() -> None:
    config = QuoSimConfig(
        requests_per_second=10_000, webhook_retry_schedule=FAST_RETRIES,
        api_writes_fire_contact_events=False,
    )
    async with quo_v2(config) as quo, receiver() as hook:
        await quo.webhook(hook.url, CONTACT_EVENTS)
        await quo.v1.post("/contacts", json=contact_body("crm-9"))
        await quo.sim.create_contact_in_app(firstName="Still fires")
        await hook.wait_for(1)
        await quo.sim.hooks.http.drain()
    assert [r.json["data"]["resource"]["firstName"] for r in hook.received] == ["Still fires"]


# -- /_sim routes -----------------------------------------------------------------------


async def test_admin_routes_publish_like_the_helpers(quo: QuoV2, hook: Receiver) -> None:
    created = await quo.webhook(hook.url, ["message.received", *CALL_EVENTS, *CONTACT_EVENTS])
    sms = await quo.admin("POST", "/_sim/sms", {"participant": CALLER, "text": "hi"})
    assert sms["type"] == "message.received" and sms["deliveries"][0]["status"] == "success"
    call = await quo.admin("POST", "/_sim/calls/completed", {"call": CALLER, "duration": 30})
    call_id = call["resource"]["id"]
    for kind, extra in (("summary", {"summary": ["S"], "nextSteps": ["N"]}),
                        ("transcript", {"dialogue": [{"content": "Hi", "identifier": CALLER}]}),
                        ("voicemail", {"transcript": "VM"}), ("recording", {}),
                        ("missed", {})):
        answer = await quo.admin("POST", f"/_sim/calls/{kind}", {"call": call_id, **extra})
        assert answer["deliveries"][0]["resourceId"] == call_id, kind
    contact = quo.sim.contacts.create({"defaultFields": {"firstName": "Ada"}})
    edit = await quo.admin("POST", f"/_sim/contacts/{contact['id']}/app-edit",
                           {"lastName": "Lovelace"})
    assert edit["resource"]["lastName"] == "Lovelace"
    gone = await quo.admin("POST", f"/_sim/contacts/{contact['id']}/app-delete")
    assert gone["type"] == "contact.deleted"
    made = await quo.admin("POST", "/_sim/contacts/app-create", {"firstName": "New"})
    assert made["resource"]["source"] is None
    published = await quo.admin("POST", "/_sim/publish", {
        "type": "call.missed", "resource": {"id": "ACx"}, "eventId": "EVadmin",
        "sign": {"omit": True},
    })
    assert published["eventId"] == "EVadmin"
    await wait_until(lambda: quo.sim.hooks.by_status()["sending"] == 0, message="settled")
    hooks = await quo.admin("GET", "/_sim/webhooks-v2")
    assert hooks["data"][0]["key"] == created["key"]
    log = await quo.admin("GET", f"/_sim/webhooks-v2/{created['id']}/deliveries")
    assert len(log["data"]) == 11 and all(item["status"] == "success" for item in log["data"])
    assert "webhook-signature" not in hook.received[-1].headers  # "sign": {"omit": true}
    stats = await quo.admin("GET", "/_sim/stats")
    assert stats["webhooks_v2"] == 1 and stats["deliveries_v2"]["by_status"]["success"] == 11


async def test_admin_routes_reject_bad_bodies(quo: QuoV2) -> None:
    session = quo.api.session
    for path, body in (("/_sim/sms", {"text": "x"}), ("/_sim/calls/completed", {"call": 1}),
                       ("/_sim/contacts/app-create", {"nickname": "x"})):
        async with session.post(quo.root + path, json=body) as response:
            assert response.status == 400, path
    async with session.post(quo.root + "/_sim/calls/summary", json={"call": "ACnope"}) as response:
        assert response.status == 404
    async with session.post(quo.root + "/_sim/contacts/nope/app-edit", json={}) as response:
        assert response.status == 404
