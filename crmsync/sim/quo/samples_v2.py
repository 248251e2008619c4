"""Canonical sample payloads of `POST /webhooks/{id}/events/test`.

The envelope id is fixed per type (`EV-test-message-received`, as in Quo's beta
docs) and shared by every test dispatch; the sample ids (`ACsampleactivity0…`,
`PNsamplephonenumber0…`) match nothing in the workspace, so a receiver can verify the
signature and the shape without touching real data.
"""

from __future__ import annotations

from crmsync.sim.quo.wire_v2 import API_VERSION, JsonObject

SAMPLE_TIME = "2026-04-13T12:00:00.000Z"
ORG = "ORsampleorganization00000000000"
ACTIVITY = "ACsampleactivity0000000000000000"
PHONE_NUMBER = "PNsamplephonenumber000000000000"
CONVERSATION = "CNsampleconversation000000000000"
USER = "USsampleus"
CONTACT = "CTsampleContact01234"
EXTERNAL = "+15555551234"
OURS = "+15555555678"
LINK = {"quo": f"https://my.quo.com/inbox/{PHONE_NUMBER}/c/{CONVERSATION}"}


def test_event_id(event_type: str) -> str:
    return "EV-test-" + event_type.replace(".", "-")


def _call_context() -> JsonObject:
    return {
        "orgId": ORG, "phoneNumberId": PHONE_NUMBER, "conversationId": CONVERSATION,
        "phoneNumberType": "shared", "userId": USER,
        "contacts": {"ids": [CONTACT], "lookupStatus": "matched"},
        "participants": {"workspace": [OURS], "external": [EXTERNAL], "resolution": "available"},
    }


def _message(event_type: str) -> tuple[JsonObject, JsonObject]:
    incoming = event_type == "message.received"
    status = {"message.received": "received", "message.delivered": "delivered",
              "message.failed": "failed", "message.undelivered": "undelivered"}[event_type]
    resource: JsonObject = {
        "id": ACTIVITY, "direction": "incoming" if incoming else "outgoing",
        "text": "Hello from Quo! This is a sample message.", "media": [], "status": status,
        "createdAt": SAMPLE_TIME,
    }
    if event_type in ("message.failed", "message.undelivered"):
        resource["errorCode"] = "30006"
    if event_type == "message.failed":
        del resource["media"]
    context = {
        "orgId": ORG, "phoneNumberId": PHONE_NUMBER, "conversationId": CONVERSATION,
        "userId": USER, "contacts": {"ids": [CONTACT], "lookupStatus": "matched"},
        "senderIdentifier": EXTERNAL if incoming else OURS,
        "recipientIdentifiers": [OURS if incoming else EXTERNAL],
    }
    return resource, context


def _call(event_type: str) -> JsonObject:
    call: JsonObject = {"id": ACTIVITY, "direction": "incoming", "createdAt": SAMPLE_TIME,
                        "updatedAt": SAMPLE_TIME}
    if event_type == "call.summary.completed":
        return {"callId": ACTIVITY, "processingStatus": "completed",
                "summary": ["Customer asked for pricing details."],
                "nextSteps": ["Send follow-up email."], "fromPhoneNumber": None,
                "handledByAiAgent": False, "answeredByUserId": USER, "jobs": []}
    if event_type == "call.transcript.completed":
        return {"callId": ACTIVITY, "createdAt": SAMPLE_TIME, "duration": 42,
                "processingStatus": "completed", "dialogue": [
                    {"userId": USER, "identifier": None, "start": 0, "end": 3,
                     "content": "Thanks for calling, how can I help?"},
                    {"userId": None, "identifier": EXTERNAL, "start": 3, "end": 7,
                     "content": "Hi, I wanted to ask about pricing."}]}
    if event_type == "call.voicemail.completed":
        return {**call, "id": "ACsamplevoicemail000000000000000", "voicemailId": "VMsample",
                "callId": ACTIVITY, "duration": 20, "from": EXTERNAL, "to": OURS,
                "transcript": "Please call me back.", "recordingUrl": None}
    if event_type in ("call.completed", "call.recording.completed"):
        call.update({"answeredAt": SAMPLE_TIME, "completedAt": SAMPLE_TIME, "duration": 55})
        if event_type == "call.completed":
            call.update({"status": "answered", "hasVoicemail": False})
        else:
            call["recordings"] = []
    return call


def _contact() -> JsonObject:
    return {
        "id": CONTACT, "firstName": "Jane", "lastName": "Doe", "company": None, "role": None,
        "location": None, "source": None, "externalId": None,
        "emails": [{"value": "jane@example.com", "type": "email"}],
        "phoneNumbers": [{"value": EXTERNAL, "type": "phone-number"}],
        "customFields": [], "createdAt": SAMPLE_TIME, "updatedAt": SAMPLE_TIME,
    }


def sample_event(event_type: str) -> JsonObject:
    """The whole sample envelope for one event type of the enum."""
    links: JsonObject = dict(LINK)
    if event_type.startswith("message."):
        resource, context = _message(event_type)
    elif event_type.startswith("call."):
        resource, context = _call(event_type), _call_context()
    elif event_type.startswith("contact."):
        resource = _contact()
        context = {"orgId": ORG, "userId": USER, "sharedWithIds": []}
        links = {"quo": f"https://my.quo.com/contacts/{CONTACT}"}
    else:  # task.* and integration.*: only the id is sure
        resource = {"id": "TKsampletask0000000000000000000"}
        context = {"orgId": ORG}
        links = {"quo": None}
    return {
        "id": test_event_id(event_type), "apiVersion": API_VERSION, "createdAt": SAMPLE_TIME,
        "type": event_type, "data": {"resource": resource, "context": context, "links": links},
    }
