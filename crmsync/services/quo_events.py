"""The Quo webhook events that become CRM notes: their types and payload shapes.

Payload objects are validated with msgspec into these Structs (unknown fields are
ignored; a payload that does not fit is an ignored event, never a crash).
`KnownCall` is what one process has seen of a call across its events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

from crmsync.quo.models import Base, Call, CallSummary, CallTranscript, Message

MESSAGE_EVENTS: Final = frozenset({"message.received", "message.delivered"})
CALL_EVENTS: Final = frozenset({"call.completed"})
# Quo's docs and real payloads disagree on the AI events' `type`: accept both.
SUMMARY_EVENTS: Final = frozenset({"call.summary.completed", "callSummary"})
TRANSCRIPT_EVENTS: Final = frozenset({"call.transcript.completed", "callTranscript"})
KNOWN_EVENTS: Final = MESSAGE_EVENTS | CALL_EVENTS | SUMMARY_EVENTS | TRANSCRIPT_EVENTS


class Media(msgspec.Struct, kw_only=True):
    url: str | None = None


class MessageObject(Message, kw_only=True):
    body: str | None = None  # older payloads' name for `text`
    media: list[Media] | None = None


class Recording(msgspec.Struct, kw_only=True):
    url: str | None = None


class Voicemail(Base):
    url: str | None = None
    recording_url: str | None = None


class CallObject(Call, kw_only=True):
    recordings: list[Recording] | None = None
    voicemail: Voicemail | None = None


class EventData(Base):
    object: dict[str, Any] = msgspec.field(default_factory=dict)
    deep_link: str | None = None


class Envelope(Base):
    type: str = ""
    data: EventData = msgspec.field(default_factory=EventData)


@dataclass(slots=True)
class KnownCall:
    """What this process has seen of one call in events (lost on restart: then the API)."""

    call: Call | None = None
    deep_link: str | None = None
    recording_urls: tuple[str, ...] = ()
    voicemail_url: str | None = None
    summary: CallSummary | None = None
    transcript: CallTranscript | None = None
