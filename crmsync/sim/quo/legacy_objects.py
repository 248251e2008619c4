"""The legacy side of an occurrence: the `data.object` a legacy webhook receives.

`LegacyObjects.legacy_object` turns a 2026-03-30 resource and context back into
today's legacy payload. A resource the workspace knows (a stored message, call,
summary, transcript or contact) is rendered exactly as the legacy helpers render it, so
one occurrence published through both systems carries the same ids and timestamps in
each format; anything else is mapped field by field (research §4.4, "Legacy field
moves", read backwards). Events that no legacy webhook can carry give None.
"""

from __future__ import annotations

from crmsync.sim.quo.contact_store import ContactStore
from crmsync.sim.quo.wire import JsonObject
from crmsync.sim.quo.workspace import Workspace

# What a legacy webhook can carry (v1 families, plus contact events of app webhooks).
LEGACY_EVENTS = frozenset({
    "message.received", "message.delivered", "call.completed", "call.ringing",
    "call.recording.completed", "call.summary.completed", "call.transcript.completed",
    "contact.updated", "contact.deleted",
})


class LegacyObjects:
    """Renders occurrences in the legacy format from the simulated workspace."""

    def __init__(self, workspace: Workspace, contacts: ContactStore) -> None:
        self.workspace = workspace
        self.contacts = contacts

    def legacy_object(
        self, event_type: str, resource: JsonObject, context: JsonObject
    ) -> JsonObject | None:
        """The legacy `data.object` of the same occurrence, or None (no legacy event)."""
        if event_type not in LEGACY_EVENTS:
            return None
        space = self.workspace
        if event_type.startswith("message."):
            message = space.messages.get(str(resource.get("id")))
            if message is not None:
                return space.message_event_object(message)
            return {
                **resource, "object": "message", "from": context.get("senderIdentifier"),
                "to": context.get("recipientIdentifiers", []),
                "phoneNumberId": context.get("phoneNumberId"), "userId": context.get("userId"),
                "contactIds": context.get("contacts", {}).get("ids", []),
                "updatedAt": resource.get("createdAt"),
            }
        if event_type.startswith("contact."):
            return self._legacy_contact(resource)
        return self._legacy_call_part(event_type, resource, context)

    def _legacy_call_part(
        self, event_type: str, resource: JsonObject, context: JsonObject
    ) -> JsonObject:
        space = self.workspace
        call_id = str(resource.get("callId") or resource.get("id"))
        call = space.calls.get(call_id)
        contact_ids = context.get("contacts", {}).get("ids", [])
        if event_type == "call.summary.completed":
            summary = space.summaries.get(call_id)
            if summary is not None:
                return space.summary_event_object(summary)
            return {"object": "callSummary", "callId": call_id,
                    "status": resource.get("processingStatus"),
                    "summary": resource.get("summary"), "nextSteps": resource.get("nextSteps"),
                    "jobs": resource.get("jobs"), "contactIds": contact_ids}
        if event_type == "call.transcript.completed":
            transcript = space.transcripts.get(call_id)
            if transcript is not None:
                return space.transcript_event_object(transcript)
            return {"object": "callTranscript", "callId": call_id,
                    "createdAt": resource.get("createdAt"), "dialogue": resource.get("dialogue"),
                    "duration": resource.get("duration"),
                    "status": resource.get("processingStatus")}
        if call is not None:
            legacy = space.call_event_object(call)
            if event_type == "call.recording.completed":
                legacy["recordings"] = resource.get("recordings") or [
                    {k: r[k] for k in ("id", "url", "type", "duration", "startTime")}
                    for r in space.recordings.get(call_id, [])
                ]
            return legacy
        participants = context.get("participants", {})
        return {
            **resource, "object": "call", "phoneNumberId": context.get("phoneNumberId"),
            "userId": context.get("userId"), "contactIds": contact_ids,
            "participants": [*participants.get("external", []),
                             *participants.get("workspace", [])],
            "recordings": resource.get("recordings"),
        }

    def _legacy_contact(self, resource: JsonObject) -> JsonObject:
        contact = self.contacts.contacts.get(str(resource.get("id")))
        if contact is not None:
            return {**contact, "object": "contact"}
        names = ("firstName", "lastName", "company", "role")
        return {
            "object": "contact", "id": resource.get("id"),
            "externalId": resource.get("externalId"), "source": resource.get("source"),
            "defaultFields": {
                **{name: resource.get(name) for name in names},
                "emails": [{"name": "", "value": e["value"]} for e in resource.get("emails", [])],
                "phoneNumbers": [
                    {"name": "", "value": p["value"]} for p in resource.get("phoneNumbers", [])
                ],
            },
            "customFields": resource.get("customFields", []),
            "createdAt": resource.get("createdAt"), "updatedAt": resource.get("updatedAt"),
        }
