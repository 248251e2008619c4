"""The simulated workspace's activity data: org, users, own lines, calls, messages, AI output.

Lines and the owner are seeded; calls, messages, summaries and transcripts are added
by tests through the `add_*` helpers, in the shapes `GET /v1/...` returns. The
`*_event_object` helpers turn a stored record into the `data.object` of a webhook
event (with `object` and `contactIds`), ready for `QuoSim.deliver_event`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from crmsync.sim.quo.config import PhoneLine
from crmsync.sim.quo.wire import IdFactory, JsonObject, now_iso

UNRESTRICTED = {"CA": "unrestricted", "Intl": "unrestricted", "US": "unrestricted"}


def seeded_lines(ids: IdFactory, rng: random.Random, count: int = 2) -> list[PhoneLine]:
    """`count` distinct fictional +1 (415) 555-01xx lines."""
    suffixes = rng.sample(range(100, 200), count)
    return [
        PhoneLine(id=ids.prefixed("PN"), number=f"+1415555{n:04d}", name=f"Line {i + 1}")
        for i, n in enumerate(suffixes)
    ]


class Workspace:
    """Org, users, phone numbers and activity records, keyed by id."""

    def __init__(
        self,
        ids: IdFactory,
        rng: random.Random,
        lines: list[PhoneLine] | None,
        contacts_by_phone: Callable[[str], list[str]],
    ) -> None:
        self._ids = ids
        self._contacts_by_phone = contacts_by_phone
        self.org_id = ids.prefixed("OR")
        self.group_id = ids.prefixed("GR")
        now = now_iso()
        self.owner: JsonObject = {
            "id": ids.prefixed("US"), "email": "owner@example.com", "firstName": "Olivia",
            "lastName": "Owner", "pictureUrl": None, "role": "owner",
            "createdAt": now, "updatedAt": now,
        }
        self.users: dict[str, JsonObject] = {self.owner["id"]: self.owner}
        self.lines = lines if lines is not None else seeded_lines(ids, rng)
        self.phone_numbers: dict[str, JsonObject] = {
            line.id: self._phone_number(line, now) for line in self.lines
        }
        self.calls: dict[str, JsonObject] = {}
        self.messages: dict[str, JsonObject] = {}
        self.summaries: dict[str, JsonObject] = {}
        self.transcripts: dict[str, JsonObject] = {}
        self.recordings: dict[str, list[JsonObject]] = {}
        self.voicemails: dict[str, JsonObject] = {}
        self._conversations: dict[tuple[str, str], str] = {}

    def _phone_number(self, line: PhoneLine, now: str) -> JsonObject:
        member = {k: self.owner[k] for k in ("email", "firstName", "lastName", "id", "role")}
        return {
            "id": line.id, "groupId": self.group_id, "portRequestId": None,
            "formattedNumber": line.number, "forward": None, "name": line.name,
            "number": line.number, "portingStatus": None, "symbol": None,
            "users": [{**member, "groupId": self.group_id}],
            "createdAt": now, "updatedAt": now,
            "restrictions": {"calling": dict(UNRESTRICTED), "messaging": dict(UNRESTRICTED)},
        }

    def _line(self, phone_number_id: str | None) -> PhoneLine:
        if phone_number_id is None:
            return self.lines[0]
        for line in self.lines:
            if line.id == phone_number_id:
                return line
        raise KeyError(f"unknown phone number id {phone_number_id}")

    # -- test helpers -----------------------------------------------------------------

    def add_message(
        self,
        participant: str,
        text: str,
        *,
        direction: str = "incoming",
        phone_number_id: str | None = None,
        status: str = "delivered",
        message_id: str | None = None,
        created_at: str | None = None,
    ) -> JsonObject:
        """Store an SMS between `participant` and one of our lines (`GET /v1/messages/{id}`)."""
        line = self._line(phone_number_id)
        ours, theirs = line.number, participant
        created = created_at or now_iso()
        message: JsonObject = {
            "id": message_id or self._ids.prefixed("AC"),
            "to": [ours] if direction == "incoming" else [theirs],
            "from": theirs if direction == "incoming" else ours,
            "text": text, "phoneNumberId": line.id, "direction": direction,
            "userId": self.owner["id"], "status": status,
            "createdAt": created, "updatedAt": created,
        }
        self.messages[message["id"]] = message
        return message

    def add_call(
        self,
        participants: list[str],
        *,
        direction: str = "incoming",
        status: str = "completed",
        duration: int = 60,
        phone_number_id: str | None = None,
        call_id: str | None = None,
        created_at: str | None = None,
    ) -> JsonObject:
        """Store a call; more than one external participant makes GET answer 400."""
        line = self._line(phone_number_id)
        created = created_at or now_iso()
        answered = status == "completed" and duration > 0
        call: JsonObject = {
            "answeredAt": created if answered else None,
            "answeredBy": self.owner["id"] if answered else None,
            "initiatedBy": self.owner["id"] if direction == "outgoing" else None,
            "direction": direction, "status": status,
            "completedAt": created if status == "completed" else None,
            "createdAt": created, "callRoute": None, "duration": duration,
            "forwardedFrom": None, "forwardedTo": None, "aiHandled": None,
            "id": call_id or self._ids.prefixed("AC"), "phoneNumberId": line.id,
            "participants": [*participants, line.number],
            "updatedAt": created, "userId": self.owner["id"],
        }
        self.calls[call["id"]] = call
        return call

    def add_call_summary(
        self, call_id: str, summary: list[str], next_steps: list[str] | None = None
    ) -> JsonObject:
        record: JsonObject = {
            "callId": call_id, "status": "completed", "summary": summary,
            "nextSteps": next_steps or [], "jobs": None,
        }
        self.summaries[call_id] = record
        return record

    def add_call_transcript(
        self, call_id: str, dialogue: list[tuple[str, str | None]], *, duration: float = 60.0
    ) -> JsonObject:
        """`dialogue` is (content, speaker E.164 or None for our user) in order."""
        step = duration / max(len(dialogue), 1)
        lines = [
            {"content": content, "start": i * step, "end": (i + 1) * step,
             "identifier": who, "userId": None if who else self.owner["id"]}
            for i, (content, who) in enumerate(dialogue)
        ]
        record: JsonObject = {
            "callId": call_id, "createdAt": now_iso(), "dialogue": lines,
            "duration": duration, "status": "completed",
        }
        self.transcripts[call_id] = record
        return record

    def conversation_id(self, phone_number_id: str, participant: str) -> str:
        """The conversation (`CN…`) between one of our lines and a participant."""
        key = (phone_number_id, participant)
        if key not in self._conversations:
            self._conversations[key] = self._ids.prefixed("CN")
        return self._conversations[key]

    def add_call_recording(self, call_id: str, *, duration: float | None = None) -> JsonObject:
        """A recording of the call (`GET /v1/call-recordings/{callId}` lists them)."""
        call = self.calls[call_id]
        recording_id = self._ids.prefixed("CR")
        record: JsonObject = {
            "id": recording_id, "type": "audio/mpeg",
            "url": f"https://files.quo.example/recordings/{recording_id}.mp3",
            "duration": call["duration"] if duration is None else duration,
            "startTime": call["answeredAt"] or call["createdAt"], "status": "completed",
        }
        self.recordings.setdefault(call_id, []).append(record)
        return record

    def add_call_voicemail(
        self, call_id: str, *, transcript: str | None, duration: float
    ) -> JsonObject:
        """The call's voicemail (`GET /v1/call-voicemails/{callId}`)."""
        voicemail_id = self._ids.prefixed("VM")
        record: JsonObject = {
            "id": voicemail_id, "duration": duration, "transcript": transcript,
            "recordingUrl": f"https://files.quo.example/voicemails/{voicemail_id}.mp3",
            "status": "completed",
        }
        self.voicemails[call_id] = record
        return record

    def external(self, numbers: list[str]) -> list[str]:
        """The numbers that are not our own lines."""
        own = {line.number for line in self.lines}
        return [n for n in numbers if n not in own]

    def contact_ids(self, numbers: list[str]) -> list[str]:
        """Contacts carrying any of the external numbers (webhook `contactIds`)."""
        return [cid for n in self.external(numbers) for cid in self._contacts_by_phone(n)]

    # -- webhook payload objects ------------------------------------------------------

    def message_event_object(self, message: JsonObject) -> JsonObject:
        numbers = [message["from"], *message["to"]]
        status = "received" if message["direction"] == "incoming" else message["status"]
        return {
            **message, "object": "message", "status": status,
            "contactIds": self.contact_ids(numbers),
        }

    def call_event_object(self, call: JsonObject) -> JsonObject:
        return {
            **call, "object": "call", "recordings": None,
            "contactIds": self.contact_ids(call["participants"]),
        }

    def summary_event_object(self, summary: JsonObject) -> JsonObject:
        call: dict[str, Any] = self.calls.get(summary["callId"], {"participants": []})
        return {
            **summary, "object": "callSummary",
            "contactIds": self.contact_ids(call["participants"]),
        }

    def transcript_event_object(self, transcript: JsonObject) -> JsonObject:
        return {**transcript, "object": "callTranscript"}

    def resource_of(self, data_object: JsonObject) -> str | None:
        """The phone-number id an event concerns, for matching `resourceIds`."""
        if isinstance(data_object.get("phoneNumberId"), str):
            return str(data_object["phoneNumberId"])
        call = self.calls.get(str(data_object.get("callId")))
        return None if call is None else str(call["phoneNumberId"])
