"""`QuoSim`'s one-call helpers: make a Quo occurrence, store it, publish it.

Each helper updates what `GET /v1/...` returns (messages, calls, summaries,
transcripts, recordings, voicemails, contacts) and publishes the occurrence through
both webhook systems (`Publisher`), returning the `Publication`. A `call` is a call
record (from `add_call` or `Publication.resource`), a call id (`AC…`), or an external
phone number (`+1…`), which makes a new call first (`**new_call` goes to `add_call`).

Contact edits "in the app" change the stored contact and fire `contact.updated`
(Quo has no `contact.created`: a new contact fires it too) or `contact.deleted`.
Fields are keyword arguments in the API's spelling or snake case: `firstName` /
`first_name`, `lastName`, `company`, `role`, `emails`, `phoneNumbers` (lists of
strings or of `{"name", "value"}`).
"""

from __future__ import annotations

from typing import Any

from crmsync.sim.quo.contact_store import NAME_FIELDS, ContactStore
from crmsync.sim.quo.payloads_v2 import Payloads
from crmsync.sim.quo.publish import Publication, Publisher
from crmsync.sim.quo.wire import IdFactory, JsonObject
from crmsync.sim.quo.workspace import Workspace

CallRef = JsonObject | str
SNAKE = {"first_name": "firstName", "last_name": "lastName", "phone_numbers": "phoneNumbers"}
LIST_FIELDS = ("emails", "phoneNumbers")
NEW_ITEM_LABEL = {"emails": "work", "phoneNumbers": "mobile"}


class OccurrenceHelpers:
    """Mixed into `QuoSim`, which provides the attributes declared here."""

    ids: IdFactory
    workspace: Workspace
    contacts: ContactStore
    payloads: Payloads
    publisher: Publisher

    # -- messages and calls -----------------------------------------------------------

    async def sms(
        self, participant: str, text: str, direction: str = "incoming", **message: Any
    ) -> Publication:
        """An SMS with `participant`: `message.received`, or `message.delivered` if outgoing."""
        record = self.workspace.add_message(participant, text, direction=direction, **message)
        kind = "message.received" if direction == "incoming" else "message.delivered"
        return await self.publisher.publish(kind, *self.payloads.message(record))

    def _call(
        self, call: CallRef, defaults: dict[str, Any], new_call: dict[str, Any]
    ) -> JsonObject:
        if isinstance(call, dict):
            return self.workspace.calls[call["id"]]
        if call.startswith("+"):
            return self.workspace.add_call([call], **{**defaults, **new_call})
        return self.workspace.calls[call]

    async def call_completed(self, call: CallRef, **new_call: Any) -> Publication:
        """`call.completed` (status answered/unanswered/... from the v1 status)."""
        record = self._call(call, {}, new_call)
        return await self.publisher.publish("call.completed", *self.payloads.call_completed(record))

    async def call_missed(self, call: CallRef, **new_call: Any) -> Publication:
        """`call.missed`; a new call is stored as v1 status `missed`, 0 s."""
        record = self._call(call, {"status": "missed", "duration": 0}, new_call)
        return await self.publisher.publish("call.missed", *self.payloads.call_missed(record))

    async def voicemail(
        self,
        call: CallRef,
        transcript: str | None = None,
        duration: float = 30.0,
        **new_call: Any,
    ) -> Publication:
        """`call.voicemail.completed`; also `GET /v1/call-voicemails/{callId}`."""
        record = self._call(call, {"status": "missed", "duration": 0}, new_call)
        self.workspace.add_call_voicemail(record["id"], transcript=transcript, duration=duration)
        parts = self.payloads.voicemail(record, self.ids.prefixed("AC"))
        return await self.publisher.publish("call.voicemail.completed", *parts)

    async def recording(
        self, call: CallRef, duration: float | None = None, **new_call: Any
    ) -> Publication:
        """`call.recording.completed`; also `GET /v1/call-recordings/{callId}`."""
        record = self._call(call, {}, new_call)
        self.workspace.add_call_recording(record["id"], duration=duration)
        return await self.publisher.publish(
            "call.recording.completed", *self.payloads.recording(record)
        )

    async def summary(
        self,
        call: CallRef,
        summary: list[str],
        next_steps: list[str] | None = None,
        **new_call: Any,
    ) -> Publication:
        """`call.summary.completed`; also `GET /v1/call-summaries/{callId}`."""
        record = self._call(call, {}, new_call)
        self.workspace.add_call_summary(record["id"], summary, next_steps)
        return await self.publisher.publish(
            "call.summary.completed", *self.payloads.summary(record)
        )

    async def transcript(
        self, call: CallRef, dialogue: list[tuple[str, str | None]], **new_call: Any
    ) -> Publication:
        """`call.transcript.completed`; `dialogue` is (content, speaker's number or None
        for our user); also `GET /v1/call-transcripts/{callId}`."""
        record = self._call(call, {}, new_call)
        duration = float(record["duration"] or 60)
        self.workspace.add_call_transcript(record["id"], dialogue, duration=duration)
        return await self.publisher.publish(
            "call.transcript.completed", *self.payloads.transcript(record)
        )

    # -- contacts ---------------------------------------------------------------------

    async def create_contact_in_app(self, **fields: Any) -> Publication:
        """A contact someone makes in the app (no `externalId`, `source` null)."""
        body = _fields_body(_normalise(fields), {"defaultFields": {}, "customFields": []})
        contact = self.contacts.create({**body, "source": None})
        return await self.publisher.publish("contact.updated", *self.payloads.contact(contact))

    async def edit_contact_in_app(self, contact_id: str, **fields: Any) -> Publication:
        """Change only the given fields of a contact, as a person in the app would."""
        contact = self.contacts.contacts[contact_id]
        body = _fields_body(_normalise(fields), contact)
        updated = self.contacts.update(contact_id, body)
        assert updated is not None
        return await self.publisher.publish("contact.updated", *self.payloads.contact(updated))

    async def delete_contact_in_app(self, contact_id: str) -> Publication:
        """Delete a contact in the app: `contact.deleted` with its last state."""
        parts = self.payloads.contact(self.contacts.contacts[contact_id])
        self.contacts.delete(contact_id)
        return await self.publisher.publish("contact.deleted", *parts)

    def contact_written(self, contact: JsonObject, *, deleted: bool = False) -> None:
        """An API write changed `contact`: fire its event in the background."""
        kind = "contact.deleted" if deleted else "contact.updated"
        if self.publisher.subscribed(kind):
            self.publisher.publish_soon(kind, *self.payloads.contact(contact))


def _normalise(fields: dict[str, Any]) -> dict[str, Any]:
    result = {SNAKE.get(name, name): value for name, value in fields.items()}
    unknown = set(result) - {*NAME_FIELDS, *LIST_FIELDS}
    if unknown:
        raise TypeError(f"unknown contact fields: {', '.join(sorted(unknown))}")
    return result


def _fields_body(edits: dict[str, Any], contact: JsonObject) -> JsonObject:
    """A full PATCH body: the contact as stored, with `edits` applied (nothing else lost)."""
    stored: JsonObject = contact["defaultFields"]
    fields: JsonObject = {name: stored.get(name) for name in NAME_FIELDS}
    for name in LIST_FIELDS:
        old: list[JsonObject] = stored.get(name, [])
        fields[name] = [dict(item) for item in old]
        if name in edits:
            by_value = {item["value"]: item for item in old}
            fields[name] = [
                dict(item) if isinstance(item, dict)
                else dict(by_value.get(item, {"name": NEW_ITEM_LABEL[name], "value": item}))
                for item in edits[name]
            ]
    fields.update({k: v for k, v in edits.items() if k in NAME_FIELDS})
    custom = [{"key": c["key"], "value": c["value"]} for c in contact["customFields"]]
    return {"defaultFields": fields, "customFields": custom}
