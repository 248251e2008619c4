"""Quo simulator: webhook CRUD, signed event delivery, and the activity getters.

Deliveries go to a tiny aiohttp receiver on a free port that records each request;
signatures are checked with `crmsync.quo.signature.verify`, as the daemon will.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import msgspec
import pytest
from aiohttp import web

from crmsync.quo.signature import HEADER, SignatureError, verify
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.testing import SimApi, contact_body

CALLER = "+14155550999"


@dataclass
class Receiver:
    url: str
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    box: list[Receiver] = []

    async def hook(request: web.Request) -> web.Response:
        box[0].received.append((dict(request.headers), await request.read()))
        return web.Response(status=box[0].status)

    app.router.add_post("/hook", hook)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    box.append(Receiver(f"http://127.0.0.1:{runner.addresses[0][1]}/hook"))
    try:
        yield box[0]
    finally:
        await runner.cleanup()


@pytest.fixture
async def quo() -> AsyncIterator[tuple[QuoSim, SimApi]]:
    config = QuoSimConfig(requests_per_second=10_000, seed=5)
    async with (
        run_quo_simulator(config=config) as (sim, base_url),
        aiohttp.ClientSession() as session,
    ):
        yield sim, SimApi(session, base_url, sim.api_key)


async def _webhook(api: SimApi, family: str, url: str, **extra: object) -> dict[str, object]:
    response = await api.post(f"/webhooks/{family}", json={"url": url, **extra})
    assert response.status == 201, response.json
    data: dict[str, object] = response.json["data"]
    return data


# -- CRUD -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("family", "events"),
    [
        ("messages", ["message.received", "message.delivered"]),
        ("calls", ["call.completed", "call.ringing", "call.recording.completed"]),
        ("call-summaries", ["call.summary.completed"]),
        ("call-transcripts", ["call.transcript.completed"]),
    ],
)
async def test_create_webhook_shape(
    quo: tuple[QuoSim, SimApi], family: str, events: list[str]
) -> None:
    sim, api = quo
    hook = await _webhook(api, family, "https://example.com/hook", events=events, label="crm")
    assert str(hook["id"]).startswith("WH") and str(hook["orgId"]).startswith("OR")
    assert hook["userId"] == sim.workspace.owner["id"]
    assert (hook["status"], hook["label"], hook["events"]) == ("enabled", "crm", events)
    assert hook["resourceIds"] == ["*"] and hook["deletedAt"] is None
    assert len(base64.b64decode(str(hook["key"]), validate=True)) == 32
    assert {"createdAt", "updatedAt", "url"} <= hook.keys()


async def test_list_get_delete(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    line = sim.workspace.lines[0].id
    a = await _webhook(api, "messages", "https://a.example/h", events=["message.received"])
    b = await _webhook(
        api, "calls", "https://b.example/h", events=["call.completed"], resourceIds=[line]
    )
    listed = await api.get("/webhooks")
    assert [w["id"] for w in listed.json["data"]] == [a["id"], b["id"]]
    assert (await api.get(f"/webhooks/{b['id']}")).json["data"] == b
    deleted = await api.delete(f"/webhooks/{a['id']}")
    assert (deleted.status, deleted.body) == (204, b"")
    assert (await api.get(f"/webhooks/{a['id']}")).status == 404
    assert (await api.delete(f"/webhooks/{a['id']}")).status == 404
    assert [w["id"] for w in (await api.get("/webhooks")).json["data"]] == [b["id"]]


async def test_list_is_scoped_to_a_user(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    await _webhook(api, "messages", "https://a.example/h", events=["message.received"])
    other = await _webhook(
        api, "messages", "https://b.example/h", events=["message.received"], userId="USother"
    )
    assert len((await api.get("/webhooks")).json["data"]) == 1
    scoped = await api.get("/webhooks", params={"userId": "USother"})
    assert [w["id"] for w in scoped.json["data"]] == [other["id"]]


async def test_there_is_no_update_endpoint(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    hook = await _webhook(api, "messages", "https://a.example/h", events=["message.received"])
    response = await api.patch(f"/webhooks/{hook['id']}", json={"label": "x"})
    assert response.status == 405


@pytest.mark.parametrize(
    ("family", "body"),
    [
        ("messages", {"url": "https://a.example", "events": ["call.completed"]}),
        ("calls", {"url": "https://a.example", "events": ["call.answered"]}),
        ("call-summaries", {"url": "https://a.example", "events": []}),
        ("messages", {"url": "https://a.example"}),
        ("messages", {"events": ["message.received"]}),
        ("messages", {"url": "not a url", "events": ["message.received"]}),
        ("messages", {"url": "https://a.example", "events": ["message.received"],
                      "resourceIds": [f"PN{i}" for i in range(11)]}),
        ("messages", {"url": "https://a.example", "events": ["message.received"],
                      "resourceIds": ["*", "PN1"]}),
        ("messages", {"url": "https://a.example", "events": ["message.received"],
                      "resourceIds": ["+14155550100"]}),
        ("messages", {"url": "https://a.example", "events": ["message.received"],
                      "status": "paused"}),
        ("messages", {"url": "https://a.example", "events": ["message.received"],
                      "userId": "me"}),
    ],
    ids=[
        "wrong-family-event", "unknown-event", "empty-events", "no-events", "no-url",
        "bad-url", "eleven-resource-ids", "star-mixed", "resource-not-pn", "bad-status",
        "bad-user",
    ],
)
async def test_invalid_webhook_bodies_are_400(
    quo: tuple[QuoSim, SimApi], family: str, body: dict[str, object]
) -> None:
    sim, api = quo
    response = await api.post(f"/webhooks/{family}", json=body)
    assert response.status == 400, response.json
    assert response.json["errors"]
    assert sim.webhooks == {}


async def test_ten_resource_ids_are_fine(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    ids = [f"PN{i}" for i in range(10)]
    hook = await _webhook(
        api, "messages", "https://a.example", events=["message.received"], resourceIds=ids
    )
    assert hook["resourceIds"] == ids


# -- delivery ---------------------------------------------------------------------------


async def test_signed_delivery_verifies(quo: tuple[QuoSim, SimApi], receiver: Receiver) -> None:
    sim, api = quo
    hook = await _webhook(api, "messages", receiver.url, events=["message.received"])
    sim.contacts.create(contact_body("c1", phones=[CALLER]))
    message = sim.add_message(CALLER, "hello")
    obj = sim.workspace.message_event_object(message)
    [result] = await sim.deliver_event("message.received", obj, deep_link="https://my.quo.com/x")
    assert result.ok and result.status == 200 and result.webhook_id == hook["id"]
    [(headers, body)] = receiver.received
    verify(str(hook["key"]), headers[HEADER], body)
    envelope = msgspec.json.decode(body)
    assert envelope["id"].startswith("EV") and envelope["object"] == "event"
    assert (envelope["apiVersion"], envelope["type"]) == ("v4", "message.received")
    assert envelope["data"]["deepLink"] == "https://my.quo.com/x"
    delivered = envelope["data"]["object"]
    assert delivered["id"] == message["id"] and delivered["object"] == "message"
    assert delivered["status"] == "received" and delivered["from"] == CALLER
    assert delivered["contactIds"] == [next(iter(sim.contacts.contacts))]
    assert result.event.body == body


async def test_only_matching_webhooks_receive(
    quo: tuple[QuoSim, SimApi], receiver: Receiver
) -> None:
    sim, api = quo
    line_1, line_2 = (line.id for line in sim.workspace.lines)
    await _webhook(api, "calls", receiver.url, events=["call.completed"])  # wrong family
    await _webhook(
        api, "messages", receiver.url, events=["message.received"], resourceIds=[line_2]
    )
    await _webhook(api, "messages", receiver.url, events=["message.received"], status="disabled")
    star = await _webhook(api, "messages", receiver.url, events=["message.received"])
    on_line_1 = sim.add_message(CALLER, "hi", phone_number_id=line_1)
    results = await sim.deliver_event(
        "message.received", sim.workspace.message_event_object(on_line_1)
    )
    assert [r.webhook_id for r in results] == [star["id"]]
    on_line_2 = sim.add_message(CALLER, "hi", phone_number_id=line_2)
    results = await sim.deliver_event(
        "message.received", sim.workspace.message_event_object(on_line_2)
    )
    assert len(results) == 2
    assert await sim.deliver_event("message.delivered", {"id": "ACx"}) == []


async def test_redelivery_sends_identical_bytes(
    quo: tuple[QuoSim, SimApi], receiver: Receiver
) -> None:
    sim, api = quo
    hook = await _webhook(api, "calls", receiver.url, events=["call.completed"])
    call = sim.add_call([CALLER])
    [first] = await sim.deliver_event("call.completed", sim.workspace.call_event_object(call))
    [again] = await sim.redeliver(first.event)
    assert again.ok
    (h1, b1), (h2, b2) = receiver.received
    assert b1 == b2 and h1[HEADER] == h2[HEADER]
    verify(str(hook["key"]), h2[HEADER], b2)
    [resigned] = await sim.redeliver(first.event, resign=True)
    assert resigned.ok and receiver.received[2][1] == b1


async def test_summary_and_transcript_events_follow_their_call(
    quo: tuple[QuoSim, SimApi], receiver: Receiver
) -> None:
    sim, api = quo
    line_2 = sim.workspace.lines[1].id
    await _webhook(
        api, "call-summaries", receiver.url, events=["call.summary.completed"],
        resourceIds=[line_2],
    )
    await _webhook(api, "call-transcripts", receiver.url, events=["call.transcript.completed"])
    call = sim.add_call([CALLER], phone_number_id=line_2)
    summary = sim.add_call_summary(call["id"], ["Asked about pricing"], next_steps=["Send quote"])
    transcript = sim.add_call_transcript(call["id"], [("Hi", CALLER), ("Hello", None)])
    space = sim.workspace
    [s] = await sim.deliver_event(
        "call.summary.completed", space.summary_event_object(summary), envelope_type="callSummary"
    )
    [t] = await sim.deliver_event(
        "call.transcript.completed", space.transcript_event_object(transcript)
    )
    assert s.ok and t.ok
    summary_envelope = msgspec.json.decode(receiver.received[0][1])
    assert summary_envelope["type"] == "callSummary"
    assert summary_envelope["data"]["object"]["object"] == "callSummary"
    transcript_object = msgspec.json.decode(receiver.received[1][1])["data"]["object"]
    assert [d["identifier"] for d in transcript_object["dialogue"]] == [CALLER, None]


async def test_bad_signatures_for_negative_tests(
    quo: tuple[QuoSim, SimApi], receiver: Receiver
) -> None:
    sim, api = quo
    hook = await _webhook(api, "messages", receiver.url, events=["message.received"])
    obj = sim.workspace.message_event_object(sim.add_message(CALLER, "x"))
    wrong_key = base64.b64encode(b"k" * 32).decode()
    stale_ms = int((time.time() - 3600) * 1000)
    await sim.deliver_event("message.received", obj, signing_key=wrong_key)
    await sim.deliver_event("message.received", obj, timestamp_ms=stale_ms)
    await sim.deliver_event("message.received", obj, omit_signature=True)
    (h1, b1), (h2, b2), (h3, _) = receiver.received
    with pytest.raises(SignatureError, match="does not match"):
        verify(str(hook["key"]), h1[HEADER], b1)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(str(hook["key"]), h2[HEADER], b2)
    assert HEADER not in {k.lower() for k in h3}


async def test_receiver_errors_are_reported(
    quo: tuple[QuoSim, SimApi], receiver: Receiver
) -> None:
    sim, api = quo
    await _webhook(api, "messages", receiver.url, events=["message.received"])
    await _webhook(api, "messages", "http://127.0.0.1:9/nothing", events=["message.received"])
    receiver.status = 500
    obj = sim.workspace.message_event_object(sim.add_message(CALLER, "x"))
    results = await sim.deliver_event("message.received", obj)
    by_url = {r.url: r for r in results}
    assert by_url[receiver.url].status == 500 and not by_url[receiver.url].ok
    unreachable = by_url["http://127.0.0.1:9/nothing"]
    assert unreachable.status is None and unreachable.error
    assert sim.snapshot()["deliveries"] == {"sent": 2, "succeeded": 0, "failed": 2}


# -- activity getters -------------------------------------------------------------------


async def test_phone_numbers_and_users(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    numbers = (await api.get("/phone-numbers")).json
    assert "nextPageToken" not in numbers
    assert [n["id"] for n in numbers["data"]] == [line.id for line in sim.workspace.lines]
    for number in numbers["data"]:
        assert number["id"].startswith("PN") and number["number"].startswith("+1")
        assert number["users"][0]["id"] == sim.workspace.owner["id"]
    one = await api.get(f"/phone-numbers/{sim.workspace.lines[0].id}")
    assert one.json["data"] == numbers["data"][0]
    assert (await api.get("/users")).status == 400  # maxResults is required
    users = await api.get("/users", params={"maxResults": "10"})
    assert [u["role"] for u in users.json["data"]] == ["owner"]
    assert users.json["nextPageToken"] is None
    owner_id = sim.workspace.owner["id"]
    assert (await api.get(f"/users/{owner_id}")).json["data"]["id"] == owner_id


async def test_activity_getters(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    message = sim.add_message(CALLER, "hello", direction="outgoing")
    call = sim.add_call([CALLER], duration=42)
    summary = sim.add_call_summary(call["id"], ["s"])
    transcript = sim.add_call_transcript(call["id"], [("hi", CALLER)])
    assert (await api.get(f"/messages/{message['id']}")).json["data"] == message
    assert message["to"] == [CALLER] and message["from"] == sim.workspace.lines[0].number
    fetched_call = (await api.get(f"/calls/{call['id']}")).json["data"]
    assert fetched_call == call and fetched_call["participants"][0] == CALLER
    assert (await api.get(f"/call-summaries/{call['id']}")).json["data"] == summary
    assert (await api.get(f"/call-transcripts/{call['id']}")).json["data"] == transcript
    for path in ("/messages/ACnope", "/calls/ACnope", "/call-summaries/ACnope",
                 "/call-transcripts/ACnope", "/phone-numbers/PNnope", "/users/USnope"):
        assert (await api.get(path)).status == 404, path


async def test_group_call_is_400_too_many_participants(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    call = sim.add_call([CALLER, "+14155550998"])
    response = await api.get(f"/calls/{call['id']}")
    assert response.status == 400
    assert (response.json["code"], response.json["title"]) == ("0101400", "Too Many Participants")
