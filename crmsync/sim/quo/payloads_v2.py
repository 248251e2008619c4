"""The 2026-03-30 event payloads: `data.resource`, `data.context`, `data.links`.

`Payloads` turns the workspace's records (the ones `GET /v1/...` returns) into the
new envelope's parts per research §4.2-§4.5: message and call resources with their
`MessageContext` / `CallContext` (`contacts.lookupStatus`, `participants.workspace`
and `.external`), the new `call.completed` status enum, summaries and transcripts keyed
by `callId`, voicemails, recordings, and contacts with label-less `emails` /
`phoneNumbers`. `legacy_objects` goes the other way.
"""

from __future__ import annotations

from typing import Any

from crmsync.sim.quo.contact_store import ContactStore
from crmsync.sim.quo.wire import JsonObject, now_iso
from crmsync.sim.quo.wire_v2 import API_VERSION
from crmsync.sim.quo.workspace import Workspace

APP_URL = "https://my.quo.com"
# v1 call statuses → `call.completed` statuses (answered calls are told apart below).
CALL_STATUS = {
    "no-answer": "unanswered", "missed": "unanswered", "busy": "unanswered",
    "canceled": "abandoned", "abandoned": "abandoned", "failed": "failed",
    "forwarded": "forwarded",
}

Parts = tuple[JsonObject, JsonObject, JsonObject]  # resource, context, links


def envelope(
    event_id: str, event_type: str, resource: JsonObject, context: JsonObject, links: JsonObject
) -> JsonObject:
    return {
        "id": event_id, "apiVersion": API_VERSION, "createdAt": now_iso(), "type": event_type,
        "data": {"resource": resource, "context": context, "links": links},
    }


def resource_id(event_type: str, resource: JsonObject) -> str | None:
    """The business id a delivery is logged under (`resourceId`): the call for call parts."""
    if event_type in ("call.summary.completed", "call.transcript.completed",
                      "call.voicemail.completed"):
        return _str_or_none(resource.get("callId"))
    return _str_or_none(resource.get("id"))


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def call_status(call: JsonObject) -> str:
    if call.get("aiHandled"):
        return "ai-handled"
    if call["status"] == "completed":
        return "answered" if call.get("answeredAt") else "unanswered"
    return CALL_STATUS.get(call["status"], "unknown")


class Payloads:
    """Builds new-format parts from the simulated workspace and contact store."""

    def __init__(self, workspace: Workspace, contacts: ContactStore) -> None:
        self.workspace = workspace
        self.contacts = contacts

    # -- contexts and links -----------------------------------------------------------

    def _lookup(self, numbers: list[str]) -> JsonObject:
        ids = self.workspace.contact_ids(numbers)
        return {"ids": ids, "lookupStatus": "matched" if ids else "none"}

    def _link(self, phone_number_id: str, external: list[str], activity_id: str) -> JsonObject:
        conversation = self.workspace.conversation_id(phone_number_id, ",".join(external))
        return {"quo": f"{APP_URL}/inbox/{phone_number_id}/c/{conversation}?at={activity_id}"}

    def message_context(self, message: JsonObject) -> JsonObject:
        external = self.workspace.external([message["from"], *message["to"]])
        return {
            "orgId": self.workspace.org_id, "phoneNumberId": message["phoneNumberId"],
            "conversationId": self.workspace.conversation_id(
                message["phoneNumberId"], ",".join(external)
            ),
            "userId": message["userId"], "contacts": self._lookup(external),
            "senderIdentifier": message["from"], "recipientIdentifiers": list(message["to"]),
        }

    def call_context(self, call: JsonObject) -> JsonObject:
        external = self.workspace.external(call["participants"])
        own = [n for n in call["participants"] if n not in external]
        return {
            "orgId": self.workspace.org_id, "phoneNumberId": call["phoneNumberId"],
            "conversationId": self.workspace.conversation_id(
                call["phoneNumberId"], ",".join(external)
            ),
            "phoneNumberType": "shared", "userId": call["userId"],
            "contacts": self._lookup(external),
            "participants": {"workspace": own, "external": external, "resolution": "available"},
        }

    def call_links(self, call: JsonObject) -> JsonObject:
        external = self.workspace.external(call["participants"])
        return self._link(call["phoneNumberId"], external, call["id"])

    # -- resources --------------------------------------------------------------------

    def message(self, message: JsonObject) -> Parts:
        status = "received" if message["direction"] == "incoming" else message["status"]
        resource = {
            "id": message["id"], "direction": message["direction"], "text": message["text"],
            "media": [], "status": status, "createdAt": message["createdAt"],
        }
        external = self.workspace.external([message["from"], *message["to"]])
        links = self._link(message["phoneNumberId"], external, message["id"])
        return resource, self.message_context(message), links

    def call_completed(self, call: JsonObject) -> Parts:
        resource = {
            "id": call["id"], "direction": call["direction"], "status": call_status(call),
            "createdAt": call["createdAt"], "answeredAt": call["answeredAt"],
            "completedAt": call["completedAt"], "updatedAt": call["updatedAt"],
            "duration": call["duration"], "hasVoicemail": call["id"] in self.workspace.voicemails,
        }
        return resource, self.call_context(call), self.call_links(call)

    def call_missed(self, call: JsonObject) -> Parts:
        resource = {"id": call["id"], "createdAt": call["createdAt"],
                    "updatedAt": call["updatedAt"]}
        return resource, self.call_context(call), self.call_links(call)

    def recording(self, call: JsonObject) -> Parts:
        recordings = [
            {k: r[k] for k in ("id", "duration", "startTime", "type", "url")}
            for r in self.workspace.recordings.get(call["id"], [])
        ]
        resource = {
            **{k: call[k] for k in ("id", "direction", "createdAt", "answeredAt",
                                    "completedAt", "updatedAt", "duration")},
            "recordings": recordings,
        }
        return resource, self.call_context(call), self.call_links(call)

    def voicemail(self, call: JsonObject, activity_id: str) -> Parts:
        voicemail = self.workspace.voicemails[call["id"]]
        external = self.workspace.external(call["participants"])
        own = [n for n in call["participants"] if n not in external]
        now = now_iso()
        resource = {
            "id": activity_id, "voicemailId": voicemail["id"], "callId": call["id"],
            "direction": call["direction"], "duration": voicemail["duration"],
            "from": (external or own)[0], "to": (own or external)[0],
            "transcript": voicemail["transcript"], "recordingUrl": voicemail["recordingUrl"],
            "createdAt": now, "updatedAt": now,
        }
        return resource, self.call_context(call), self.call_links(call)

    def summary(self, call: JsonObject) -> Parts:
        summary = self.workspace.summaries[call["id"]]
        resource = {
            "callId": call["id"], "processingStatus": summary["status"],
            "summary": summary["summary"], "nextSteps": summary["nextSteps"],
            "fromPhoneNumber": None, "handledByAiAgent": False,
            "answeredByUserId": call.get("answeredBy"), "jobs": summary["jobs"] or [],
        }
        return resource, self.call_context(call), self.call_links(call)

    def transcript(self, call: JsonObject) -> Parts:
        transcript = self.workspace.transcripts[call["id"]]
        resource = {
            "callId": call["id"], "createdAt": transcript["createdAt"],
            "duration": transcript["duration"], "processingStatus": transcript["status"],
            "dialogue": [
                {k: line[k] for k in ("userId", "identifier", "content", "start", "end")}
                for line in transcript["dialogue"]
            ],
        }
        return resource, self.call_context(call), self.call_links(call)

    def contact(self, contact: JsonObject) -> Parts:
        fields: JsonObject = contact["defaultFields"]
        resource = {
            "id": contact["id"],
            **{name: fields.get(name) for name in ("firstName", "lastName", "company", "role")},
            "location": None, "source": contact["source"], "externalId": contact["externalId"],
            "emails": [{"value": e["value"], "type": "email"} for e in fields["emails"]],
            "phoneNumbers": [
                {"value": p["value"], "type": "phone-number"} for p in fields["phoneNumbers"]
            ],
            "customFields": [dict(item) for item in contact["customFields"]],
            "createdAt": contact["createdAt"], "updatedAt": contact["updatedAt"],
        }
        context = {
            "orgId": self.workspace.org_id, "userId": self.workspace.owner["id"],
            "sharedWithIds": [],
        }
        return resource, context, {"quo": f"{APP_URL}/contacts/{contact['id']}"}

    # -- defaults for `QuoSim.publish` -------------------------------------------------

    def default_parts(self, event_type: str, resource: JsonObject) -> tuple[JsonObject, JsonObject]:
        """Context and links for a resource published without them."""
        call = self.workspace.calls.get(str(resource.get("callId") or resource.get("id")))
        message = self.workspace.messages.get(str(resource.get("id")))
        if event_type.startswith("message.") and message is not None:
            return self.message(message)[1:]
        if event_type.startswith("call.") and call is not None:
            return self.call_context(call), self.call_links(call)
        if event_type.startswith("contact."):
            contact_id = str(resource.get("id"))
            context = {"orgId": self.workspace.org_id, "userId": self.workspace.owner["id"],
                       "sharedWithIds": []}
            return context, {"quo": f"{APP_URL}/contacts/{contact_id}"}
        return {"orgId": self.workspace.org_id}, {"quo": None}
