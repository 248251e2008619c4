"""Quo simulator, 2026-03-30 deliveries: Standard Webhooks signatures, the retry schedule,
the delivery log with its filters, manual retry and test events (research §2.5-§3)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sim.quo_v2_support import CALLER, QuoV2, Receiver, quo_v2, receiver
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from crmsync.sim.quo import QUO_RETRY_SCHEDULE, QuoSimConfig, SignOverride
from crmsync.sim.quo.testing import wait_until


@pytest.fixture
async def quo() -> AsyncIterator[QuoV2]:
    async with quo_v2() as env:
        yield env


@pytest.fixture
async def hook() -> AsyncIterator[Receiver]:
    async with receiver() as target:
        yield target


def test_the_default_schedule_is_quos_8_attempts_over_27_h_35_min() -> None:
    assert len(QUO_RETRY_SCHEDULE) == 8
    assert sum(QUO_RETRY_SCHEDULE) == 27 * 3600 + 35 * 60 + 5
    assert QuoSimConfig().webhook_retry_schedule == QUO_RETRY_SCHEDULE
    with pytest.raises(ValueError, match="webhook_retry_schedule"):
        QuoSimConfig(webhook_retry_schedule=())


# -- signatures -------------------------------------------------------------------------


async def test_deliveries_verify_with_standardwebhooks(quo: QuoV2, hook: Receiver) -> None:
    first = await quo.webhook(hook.url, ["message.received"])
    second = await quo.webhook(hook.url, ["message.received"])
    publication = await quo.sim.sms(CALLER, "hello")
    assert publication.ok and len(publication.deliveries) == 2
    envelopes = []
    for received, created in zip(hook.received, (first, second), strict=True):
        envelopes.append(Webhook(created["key"]).verify(received.body, received.headers))
        assert received.headers["webhook-id"].startswith("msg_")
        assert received.headers["webhook-signature"].startswith("v1,")
        assert abs(int(received.headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60
        with pytest.raises(WebhookVerificationError):  # each webhook has its own key
            other = second if created is first else first
            Webhook(other["key"]).verify(received.body, received.headers)
    # One event id for every webhook; one webhook-id per delivery.
    assert envelopes[0]["id"] == envelopes[1]["id"] == publication.event_id
    ids = {r.headers["webhook-id"] for r in hook.received}
    assert ids == {d.id for d in publication.deliveries} and len(ids) == 2


async def test_retries_keep_the_webhook_id_and_sign_afresh(quo: QuoV2, hook: Receiver) -> None:
    created = await quo.webhook(hook.url, ["message.received"])
    hook.script = [503]
    publication = await quo.sim.sms(CALLER, "again")
    [delivery] = publication.deliveries
    await delivery.wait_settled()
    first, second = hook.received
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == delivery.id
    assert first.body == second.body
    for received in (first, second):
        Webhook(created["key"]).verify(received.body, received.headers)


async def test_a_rotated_key_signs_the_next_attempts(quo: QuoV2, hook: Receiver) -> None:
    created = await quo.webhook(hook.url, ["message.received"])
    rotated = (await quo.api.post(f"/webhooks/{created['id']}/rotate")).json["data"]["key"]
    await quo.sim.sms(CALLER, "rotated")
    [received] = hook.received
    Webhook(rotated).verify(received.body, received.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(created["key"]).verify(received.body, received.headers)


@pytest.mark.parametrize(
    "override",
    [SignOverride(key="whsec_" + "A" * 32), SignOverride(timestamp=1_600_000_000),
     SignOverride(omit=True)],
)
async def test_a_spoilt_first_attempt_is_retried_signed_properly(
    quo: QuoV2, hook: Receiver, override: SignOverride
) -> None:
    created = await quo.webhook(hook.url, ["contact.updated"])
    contact = quo.sim.contacts.create({"defaultFields": {"firstName": "Ada"}})
    signer = Webhook(created["key"])
    hook.script = [401]
    publication = await quo.sim.publish(
        "contact.updated", quo.sim.payloads.contact(contact)[0], sign=override
    )
    await publication.deliveries[0].wait_settled()
    bad, good = hook.received
    with pytest.raises(WebhookVerificationError):
        signer.verify(bad.body, bad.headers)
    signer.verify(good.body, good.headers)
    assert publication.deliveries[0].status == "success"


# -- retries and the log ----------------------------------------------------------------


async def test_failures_follow_the_schedule_then_fail(quo: QuoV2, hook: Receiver) -> None:
    created = await quo.webhook(hook.url, ["message.received"])
    hook.status = 500
    [delivery] = (await quo.sim.sms(CALLER, "never")).deliveries
    await delivery.wait_settled()
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert len(hook.received) == 3  # FAST_RETRIES: immediately, then twice more
    detail = await quo.api.get(f"/webhooks/{created['id']}/events/{delivery.id}")
    data = detail.json["data"]
    assert set(data) == {"id", "eventId", "resourceId", "eventType", "createdAt",
                         "requestBody", "attempts"}
    assert data["requestBody"] == hook.received[0].body.decode()
    attempts = data["attempts"]
    assert [a["triggerType"] for a in attempts] == ["scheduled"] * 3
    assert [a["responseStatusCode"] for a in attempts] == [500] * 3
    assert all(a["status"] == "failed" and a["id"].startswith("atmpt_") for a in attempts)
    assert attempts[0]["responseBody"] == "answered 500" and attempts[0]["url"] == hook.url
    stamps = [a["timestamp"] for a in attempts]
    assert stamps == sorted(stamps, reverse=True)  # newest first
    listed = await quo.api.get(f"/webhooks/{created['id']}/events")
    assert listed.json["data"][0]["status"] == "failed"


async def test_a_pending_retry_is_sending_with_its_next_attempt() -> None:
    config = QuoSimConfig(requests_per_second=10_000, webhook_retry_schedule=(0.0, 300.0))
    async with quo_v2(config) as quo, receiver() as hook:
        created = await quo.webhook(hook.url, ["message.received"])
        hook.status = 502
        [delivery] = (await quo.sim.sms(CALLER, "later")).deliveries
        listed = await quo.api.get(f"/webhooks/{created['id']}/events")
    [item] = listed.json["data"]
    assert item["status"] == "sending" and item["id"] == delivery.id
    next_at = datetime.fromisoformat(item["nextAttemptAt"])
    assert timedelta(seconds=290) < next_at - datetime.now(UTC) <= timedelta(seconds=300)


async def test_an_unreachable_receiver_is_status_code_0(quo: QuoV2) -> None:
    async with receiver() as hook:
        url = hook.url
    created = await quo.webhook(url, ["message.received"])
    [delivery] = (await quo.sim.sms(CALLER, "nobody")).deliveries
    await delivery.wait_settled()
    detail = await quo.api.get(f"/webhooks/{created['id']}/events/{delivery.id}")
    assert {a["responseStatusCode"] for a in detail.json["data"]["attempts"]} == {0}


async def test_manual_retry_is_202_and_a_manual_attempt(quo: QuoV2, hook: Receiver) -> None:
    created = await quo.webhook(hook.url, ["message.received"])
    hook.status = 500
    [delivery] = (await quo.sim.sms(CALLER, "catch me up")).deliveries
    await delivery.wait_settled()
    hook.status = 200
    path = f"/webhooks/{created['id']}/events/{delivery.id}"
    response = await quo.api.post(path + "/retry")
    assert response.status == 202 and response.json == {}
    await wait_until(lambda: delivery.status == "success", message="manual retry")
    attempts = (await quo.api.get(path)).json["data"]["attempts"]
    assert attempts[0]["triggerType"] == "manual" and attempts[0]["status"] == "success"
    assert len(attempts) == 4
    assert hook.received[-1].headers["webhook-id"] == delivery.id
    assert quo.sim.snapshot()["deliveries_v2"]["manual"] == 1


async def test_unknown_deliveries_are_404(quo: QuoV2) -> None:
    created = await quo.webhook("https://example.com/x", ["message.received"])
    for method, suffix in (("GET", ""), ("POST", "/retry")):
        path = f"/webhooks/{created['id']}/events/msg_nope{suffix}"
        response = await quo.api.request(method, path)
        assert response.status == 404 and "msg_nope" in response.json["message"]


async def test_deleting_a_webhook_stops_its_retries() -> None:
    config = QuoSimConfig(requests_per_second=10_000, webhook_retry_schedule=(0.0, 0.2))
    async with quo_v2(config) as quo, receiver() as hook:
        created = await quo.webhook(hook.url, ["message.received"])
        hook.status = 500
        [delivery] = (await quo.sim.sms(CALLER, "gone")).deliveries
        assert (await quo.api.delete(f"/webhooks/{created['id']}")).status == 204
        await delivery.wait_settled()
        assert len(hook.received) == 1 and quo.sim.hooks.log == {}


async def test_a_disabled_webhook_gets_nothing_published(quo: QuoV2, hook: Receiver) -> None:
    await quo.webhook(hook.url, ["message.received"], status="disabled")
    publication = await quo.sim.sms(CALLER, "quiet")
    assert publication.deliveries == [] and hook.received == []


# -- listing filters --------------------------------------------------------------------


async def test_the_log_lists_newest_first_with_filters(quo: QuoV2, hook: Receiver) -> None:
    created = await quo.webhook(hook.url, ["message.received", "call.completed"])
    path = f"/webhooks/{created['id']}/events"
    sms = await quo.sim.sms(CALLER, "one")
    # A client passes a delivery's own `createdAt` (milliseconds): it must exclude it.
    cut = sms.deliveries[0].wire()["createdAt"]
    later = sms.deliveries[0].created_at + timedelta(milliseconds=2)
    await wait_until(lambda: datetime.now(UTC) > later, message="the next millisecond")
    hook.status = 500
    call = await quo.sim.call_completed(CALLER, duration=20)
    await call.deliveries[0].wait_settled()
    hook.status = 200
    second_sms = await quo.sim.sms(CALLER, "two")

    async def ids(**params: str) -> list[str]:
        response = await quo.api.get(path, params=params)
        assert response.status == 200, response.json
        return [item["id"] for item in response.json["data"]]

    newest_first = [p.deliveries[0].id for p in (second_sms, call, sms)]
    assert await ids() == newest_first
    assert await ids(status="failed") == [call.deliveries[0].id]
    assert await ids(status="success") == [newest_first[0], newest_first[2]]
    assert await ids(eventType="call.completed") == [call.deliveries[0].id]
    assert await ids(**{"eventType[in]": "call.completed,message.received"}) == newest_first
    assert await ids(resourceId=sms.resource["id"]) == [sms.deliveries[0].id]
    assert await ids(resourceId=call.resource["id"]) == [call.deliveries[0].id]
    assert await ids(**{"createdAt[gt]": cut}) == newest_first[:2]
    before_call = call.deliveries[0].wire()["createdAt"]
    assert await ids(**{"createdAt[lt]": before_call}) == [sms.deliveries[0].id]
    item = (await quo.api.get(path, params={"limit": "1"})).json["data"][0]
    assert item == {
        "id": newest_first[0], "eventId": second_sms.event_id,
        "resourceId": second_sms.resource["id"], "eventType": "message.received",
        "status": "success", "nextAttemptAt": None, "createdAt": item["createdAt"],
    }


async def test_pages_follow_next_cursor(quo: QuoV2, hook: Receiver) -> None:
    created = await quo.webhook(hook.url, ["message.received"])
    sent = [(await quo.sim.sms(CALLER, f"m{i}")).deliveries[0].id for i in range(5)]
    path = f"/webhooks/{created['id']}/events"
    seen: list[str] = []
    params = {"limit": "2"}
    while True:
        page = (await quo.api.get(path, params=params)).json
        seen += [item["id"] for item in page["data"]]
        if page["nextCursor"] is None:
            break
        params = {"limit": "2", "after": page["nextCursor"]}
    assert seen == sent[::-1]
    default = (await quo.api.get(path)).json
    assert len(default["data"]) == 5 and default["nextCursor"] is None


@pytest.mark.parametrize(
    ("params", "path"),
    [({"limit": "0"}, "/query/limit"), ({"limit": "51"}, "/query/limit"),
     ({"limit": "ten"}, "/query/limit"), ({"status": "done"}, "/query/status"),
     ({"createdAt[gt]": "yesterday"}, "/query/createdAt[gt]"),
     ({"after": "garbage"}, "/query/after")],
)
async def test_bad_filters_are_400(quo: QuoV2, params: dict[str, str], path: str) -> None:
    created = await quo.webhook("https://example.com/x", ["message.received"])
    response = await quo.api.get(f"/webhooks/{created['id']}/events", params=params)
    assert response.status == 400
    assert [e["path"] for e in response.json["errors"]] == [path]


# -- test events ------------------------------------------------------------------------


async def test_test_events_reach_even_a_disabled_webhook(quo: QuoV2, hook: Receiver) -> None:
    created = await quo.webhook(hook.url, ["message.received"], status="disabled")
    path = f"/webhooks/{created['id']}/events"
    response = await quo.api.post(path + "/test", json={"eventType": "message.received"})
    assert response.status == 200
    sample = response.json
    assert sample["id"] == "EV-test-message-received" and sample["type"] == "message.received"
    assert sample["apiVersion"] == "2026-03-30" and "resource" in sample["data"]
    again = await quo.api.post(path + "/test", json={"eventType": "message.received"})
    assert again.json["id"] == sample["id"]
    received = await hook.wait_for(2)
    for delivery in received:
        assert Webhook(created["key"]).verify(delivery.body, delivery.headers) == sample
    assert received[0].headers["webhook-id"] != received[1].headers["webhook-id"]
    await wait_until(lambda: quo.sim.hooks.by_status()["success"] == 2, message="logged")
    listed = (await quo.api.get(path)).json["data"]
    assert [(i["eventId"], i["resourceId"], i["status"]) for i in listed] == [
        (None, None, "success")
    ] * 2
    assert (await quo.api.get(path, params={"resourceId": "ACsampleactivity0000000000000000"})
            ).json["data"] == []


@pytest.mark.parametrize(
    "event_type",
    ["message.delivered", "call.completed", "call.summary.completed", "call.transcript.completed",
     "call.voicemail.completed", "contact.deleted", "task.created"],
)
async def test_every_event_type_has_a_sample(quo: QuoV2, event_type: str) -> None:
    created = await quo.webhook("https://example.com/x", ["message.received"])
    response = await quo.api.post(
        f"/webhooks/{created['id']}/events/test", json={"eventType": event_type}
    )
    assert response.status == 200 and response.json["type"] == event_type
    assert set(response.json["data"]) == {"resource", "context", "links"}


@pytest.mark.parametrize("body", [{}, {"eventType": "webhook.test"}, {"eventType": 1, "x": 2}])
async def test_bad_test_event_bodies_are_400(quo: QuoV2, body: dict[str, object]) -> None:
    created = await quo.webhook("https://example.com/x", ["message.received"])
    response = await quo.api.post(f"/webhooks/{created['id']}/events/test", json=body)
    assert response.status == 400 and response.json["code"] == "0304400"
