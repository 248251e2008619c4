"""The Quo webhook events that become CRM notes: both envelopes, and what a call's events said.

Two envelopes arrive at the same route (research `quo-api-2026-03-30.md` §4): the
legacy one (`data.object`, `data.deepLink`) and the 2026-03-30 one (`data.resource`,
`data.context`, `data.links.quo`); `quo/envelope.py` tells them apart. `parse_event`
reads the resource of either into one of two shapes:
a `MessageEvent`, or a `CallEvent` that names its call and carries one `CallPart`.
Payloads are validated with msgspec (unknown fields are ignored; a payload that does
not fit raises `msgspec.ValidationError`: an ignored event, never a crash).

`CallRecord` is what the events of one call said, one slot per event type (the call
itself, missed, recording, voicemail, summary, transcript). It is stored (the
`quo_calls` table), so a restart forgets nothing, and `merge` is commutative: when a
slot is filled twice (the same occurrence through both webhook systems, or a retry)
the richer, newer-system, later part wins by a fixed order, never the last to arrive.
The same set of events therefore gives the same record in any arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec

from crmsync.quo.envelope import NEW_SYSTEM, QuoEnvelope
from crmsync.quo.models import Base, Call, CallSummary, CallTranscript, Message

NEW: Final = NEW_SYSTEM
LEGACY: Final = "legacy"
_RANK: Final = {LEGACY: 0, NEW: 1}

MESSAGE_EVENTS: Final = frozenset({"message.received", "message.delivered"})
COMPLETED_EVENTS: Final = frozenset({"call.completed"})
MISSED_EVENTS: Final = frozenset({"call.missed"})
RECORDING_EVENTS: Final = frozenset({"call.recording.completed"})
VOICEMAIL_EVENTS: Final = frozenset({"call.voicemail.completed"})
# The legacy system's AI deliveries use `callSummary` / `callTranscript` as `type`.
SUMMARY_EVENTS: Final = frozenset({"call.summary.completed", "callSummary"})
TRANSCRIPT_EVENTS: Final = frozenset({"call.transcript.completed", "callTranscript"})
CALL_EVENTS: Final = (
    COMPLETED_EVENTS | MISSED_EVENTS | RECORDING_EVENTS | VOICEMAIL_EVENTS
    | SUMMARY_EVENTS | TRANSCRIPT_EVENTS
)
KNOWN_EVENTS: Final = MESSAGE_EVENTS | CALL_EVENTS

Slot = Literal["completed", "missed", "recording", "voicemail", "summary", "transcript"]


# -- payload shapes -----------------------------------------------------------------------


class Media(msgspec.Struct, kw_only=True):
    url: str | None = None


class MessageObject(Message, kw_only=True):
    """A legacy `data.object` of a message."""

    body: str | None = None  # older payloads' name for `text`
    media: list[Media] | None = None


class MessageResource(Base):
    """A 2026-03-30 `data.resource` of `message.received` / `message.delivered`."""

    id: str
    direction: str | None = None
    text: str | None = None
    media: list[Media] | None = None
    created_at: str | None = None


class MessageContext(Base):
    sender_identifier: str | None = None
    recipient_identifiers: list[str] = msgspec.field(default_factory=list)


class Participants(Base):
    workspace: list[str] = msgspec.field(default_factory=list)
    external: list[str] = msgspec.field(default_factory=list)


class CallContext(Base):
    participants: Participants | None = None


class Recording(msgspec.Struct, kw_only=True):
    duration: int | float | None = None


class CallObject(Call, kw_only=True):
    """A legacy `data.object` of a call (`call.completed`, `call.recording.completed`)."""

    recordings: list[Recording] | None = None
    voicemail: dict[str, Any] | None = None


class CallResource(Base):
    """`call.completed`, `call.missed` and `call.recording.completed` of 2026-03-30."""

    id: str
    direction: str | None = None
    status: str | None = None
    created_at: str | None = None
    answered_at: str | None = None
    completed_at: str | None = None
    updated_at: str | None = None
    duration: int | float | None = None
    has_voicemail: bool | None = None
    recordings: list[Recording] | None = None


class VoicemailResource(Base):
    id: str | None = None  # the voicemail's own activity
    call_id: str | None = None
    direction: str | None = None
    duration: int | float | None = None
    from_: str | None = msgspec.field(default=None, name="from")
    to: list[str] | str | None = None
    transcript: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class SummaryResource(CallSummary, kw_only=True):
    processing_status: str | None = None
    answered_by_user_id: str | None = None


class TranscriptResource(CallTranscript, kw_only=True):
    processing_status: str | None = None


# -- what one event said ------------------------------------------------------------------


class CallPart(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One event's word on a call: the fields its type carries, the rest None."""

    system: str
    link: str | None = None
    external: tuple[str, ...] = ()  # the other side (legacy: every participant)
    direction: str | None = None
    status: str | None = None
    duration: int | None = None
    answered_by: str | None = None  # a Quo user id
    answered_at: str | None = None
    created_at: str | None = None  # the call's start (never a voicemail's own time)
    updated_at: str | None = None
    has_voicemail: bool | None = None
    recordings: int | None = None
    recording_seconds: int | None = None
    voicemail_transcript: str | None = None
    summary: CallSummary | None = None
    transcript: CallTranscript | None = None

    def richness(self) -> int:
        """Whether the part has its content (an empty summary loses to a full one)."""
        if self.summary is not None:
            return int(bool(self.summary.summary or self.summary.next_steps))
        if self.transcript is not None:
            return int(bool(self.transcript.dialogue))
        return int(bool(self.voicemail_transcript) or self.status is not None)


def _order(part: CallPart) -> tuple[int, int, str, bytes]:
    """The fixed order a slot's candidates are ranked by (the greatest is kept)."""
    return (
        part.richness(), _RANK.get(part.system, -1), part.updated_at or "",
        msgspec.json.encode(part),
    )


class CallRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What the events of one call said, one slot per event type (stored as JSON)."""

    completed: CallPart | None = None
    missed: CallPart | None = None
    recording: CallPart | None = None
    voicemail: CallPart | None = None
    summary: CallPart | None = None
    transcript: CallPart | None = None

    def merge(self, slot: Slot, part: CallPart) -> CallRecord:
        """This record with `part` in `slot`, unless the slot holds a greater one."""
        held: CallPart | None = getattr(self, slot)
        if held is not None and _order(held) >= _order(part):
            return self
        return msgspec.structs.replace(self, **{slot: part})

    def parts(self) -> list[CallPart]:
        """Filled slots, in the precedence the note's facts are read by."""
        slots = (self.completed, self.missed, self.recording, self.voicemail,
                 self.summary, self.transcript)
        return [p for p in slots if p is not None]

    @property
    def has_base(self) -> bool:
        """Whether an event about the call itself (not its AI output) was seen."""
        return any(p is not None for p in (self.completed, self.missed, self.recording))

    @property
    def legacy_only(self) -> bool:
        return all(p.system == LEGACY for p in self.parts())


def decode_record(raw: bytes | None) -> CallRecord:
    """A stored record; an unreadable one (a format this version cannot read) is empty."""
    if not raw:
        return CallRecord()
    try:
        return msgspec.json.decode(raw, type=CallRecord)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return CallRecord()


def encode_record(record: CallRecord) -> bytes:
    return msgspec.json.encode(record)


@dataclass(frozen=True, slots=True)
class MessageEvent:
    id: str
    direction: str
    text: str
    senders: tuple[str, ...]
    recipients: tuple[str, ...]
    created_at: str | None
    link: str | None
    media_urls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CallEvent:
    call_id: str
    slot: Slot
    part: CallPart


# -- reading an event ---------------------------------------------------------------------


def _strings(value: list[str] | str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(v for v in value if v)


def _seconds(value: int | float | None) -> int | None:
    return None if value is None else round(value)


def _slot(kind: str) -> Slot:
    if kind in COMPLETED_EVENTS:
        return "completed"
    if kind in MISSED_EVENTS:
        return "missed"
    if kind in RECORDING_EVENTS:
        return "recording"
    if kind in VOICEMAIL_EVENTS:
        return "voicemail"
    return "summary" if kind in SUMMARY_EVENTS else "transcript"


def parse_event(kind: str, envelope: QuoEnvelope) -> MessageEvent | CallEvent:
    """The event of type `kind` (one of `KNOWN_EVENTS`) in either envelope."""
    if envelope.system == NEW_SYSTEM:
        return _parse_new(kind, envelope.resource, envelope.context, envelope.deep_link)
    return _parse_legacy(kind, envelope.resource, envelope.deep_link)


def _recording_totals(recordings: list[Recording] | None) -> tuple[int | None, int | None]:
    if not recordings:
        return None, None
    seconds = sum(r.duration or 0 for r in recordings)
    return len(recordings), round(seconds)


def _voicemail(
    obj: dict[str, Any], system: str, link: str | None, external: tuple[str, ...]
) -> CallEvent:
    """`call.voicemail.completed`: `callId` names the call; `duration` is the message's."""
    voicemail = msgspec.convert(obj, VoicemailResource)
    if not voicemail.call_id:
        raise msgspec.ValidationError("the voicemail names no call")
    return CallEvent(voicemail.call_id, "voicemail", CallPart(
        system=system, link=link,
        external=external or (*_strings(voicemail.from_), *_strings(voicemail.to)),
        direction=voicemail.direction, duration=_seconds(voicemail.duration),
        updated_at=voicemail.updated_at, has_voicemail=True,
        voicemail_transcript=voicemail.transcript,
    ))


def _parse_new(
    kind: str, resource: dict[str, Any], context: dict[str, Any], link: str | None
) -> MessageEvent | CallEvent:
    if kind in MESSAGE_EVENTS:
        message = msgspec.convert(resource, MessageResource)
        sides = msgspec.convert(context, MessageContext)
        return MessageEvent(
            id=message.id,
            direction=message.direction or (
                "incoming" if kind == "message.received" else "outgoing"),
            text=message.text or "",
            senders=_strings(sides.sender_identifier),
            recipients=_strings(sides.recipient_identifiers),
            created_at=message.created_at,
            link=link,
            media_urls=tuple(m.url for m in message.media or [] if m.url),
        )
    call_context = msgspec.convert(context, CallContext)
    external = tuple(call_context.participants.external) if call_context.participants else ()
    slot = _slot(kind)
    if slot == "voicemail":
        return _voicemail(resource, NEW, link, external)
    if slot == "summary":
        summary = msgspec.convert(resource, SummaryResource)
        return CallEvent(summary.call_id, slot, CallPart(
            system=NEW, link=link, external=external,
            answered_by=summary.answered_by_user_id,
            summary=CallSummary(
                call_id=summary.call_id, status=summary.processing_status or summary.status,
                summary=summary.summary, next_steps=summary.next_steps,
            ),
        ))
    if slot == "transcript":
        transcript = msgspec.convert(resource, TranscriptResource)
        return CallEvent(transcript.call_id, slot, CallPart(
            system=NEW, link=link, external=external,
            transcript=CallTranscript(
                call_id=transcript.call_id,
                status=transcript.processing_status or transcript.status,
                duration=transcript.duration, dialogue=transcript.dialogue,
            ),
        ))
    call = msgspec.convert(resource, CallResource)
    count, seconds = _recording_totals(call.recordings)
    return CallEvent(call.id, slot, CallPart(
        system=NEW, link=link, external=external,
        direction=call.direction or ("incoming" if slot == "missed" else None),
        status=call.status if slot == "completed" else None,
        duration=_seconds(call.duration), answered_at=call.answered_at,
        created_at=call.created_at, updated_at=call.updated_at,
        has_voicemail=call.has_voicemail,
        recordings=count if slot == "recording" else None,
        recording_seconds=seconds if slot == "recording" else None,
    ))


def _parse_legacy(kind: str, obj: dict[str, Any], link: str | None) -> MessageEvent | CallEvent:
    if kind in MESSAGE_EVENTS:
        message = msgspec.convert(obj, MessageObject)
        return MessageEvent(
            id=message.id,
            direction=message.direction or (
                "incoming" if kind == "message.received" else "outgoing"),
            text=message.text or message.body or "",
            senders=_strings(message.from_),
            recipients=_strings(message.to),
            created_at=message.created_at,
            link=link,
            media_urls=tuple(m.url for m in message.media or [] if m.url),
        )
    slot = _slot(kind)
    if slot == "summary":
        summary = msgspec.convert(obj, CallSummary)
        return CallEvent(summary.call_id, slot, CallPart(
            system=LEGACY, link=link,
            summary=CallSummary(call_id=summary.call_id, status=summary.status,
                                summary=summary.summary, next_steps=summary.next_steps),
        ))
    if slot == "transcript":
        transcript = msgspec.convert(obj, CallTranscript)
        return CallEvent(transcript.call_id, slot, CallPart(
            system=LEGACY, link=link,
            transcript=CallTranscript(call_id=transcript.call_id, status=transcript.status,
                                      duration=transcript.duration,
                                      dialogue=transcript.dialogue),
        ))
    if slot == "voicemail":  # not a legacy event; read it the same way if one comes
        return _voicemail(obj, LEGACY, link, ())
    call = msgspec.convert(obj, CallObject)
    count, seconds = _recording_totals(call.recordings)
    return CallEvent(call.id, slot, CallPart(
        system=LEGACY, link=link, external=tuple(p for p in call.participants if p),
        direction=call.direction, status=call.status if slot == "completed" else None,
        duration=call.duration, answered_by=call.answered_by, answered_at=call.answered_at,
        created_at=call.created_at,
        has_voicemail=True if call.voicemail else None,
        recordings=count if slot == "recording" else None,
        recording_seconds=seconds if slot == "recording" else None,
    ))


def api_part(call: Call) -> CallPart:
    """`GET /v1/calls/{id}` read like a legacy `call.completed` (the same fields)."""
    return CallPart(
        system=LEGACY, external=tuple(p for p in call.participants if p),
        direction=call.direction, status=call.status, duration=call.duration,
        answered_by=call.answered_by, answered_at=call.answered_at,
        created_at=call.created_at,
    )


