"""Quo webhook envelopes of both systems, read the same way (pure functions, no I/O).

Legacy deliveries (`/v1/webhooks`, `openphone-signature`) carry
`{"id", "object": "event", "type", "data": {"object": {…}, "deepLink"?}}`; the
2026-03-30 system (Standard Webhooks) carries `{"id", "apiVersion": "2026-03-30",
"type", "createdAt", "data": {"resource": {…}, "context": {…}, "links": {"quo"}}}`
(research `quo-api-2026-03-30.md` §4.2). `decode` tells them apart by `data.resource`
versus `data.object` and returns one `QuoEnvelope`: the event id, its type (legacy
`callSummary` / `callTranscript` normalised to the event names), the resource, and:

* `resource_id`: the object the event is about (a message or call id; for
  `call.summary.completed`, `call.transcript.completed` and `call.voicemail.completed`
  the `callId`; a contact id).
* `business_key`: the same string for one Quo occurrence whichever system delivered it,
  so a migration window in which both webhooks deliver it stores it once. It is the
  normalised type, the resource id, and the resource timestamp both formats carry for
  that type (`OCCURRENCE_STAMP`): `createdAt` of a message or call (each of their
  events happens once per message or call), `updatedAt` of a contact (every edit is a
  new `contact.updated`, so a later edit is a new key). Summaries carry no timestamp in
  either format and happen once per call: type and call id. Types not listed (tasks,
  whose resources carry no timestamp and repeat) and resources lacking the field get
  no key: then only the event id and the delivery id de-duplicate, never a guess that
  could swallow a real event.

Lenient on purpose: only `id` and `type` are required (as the legacy intake always
did); everything else defaults to empty, and consumers validate what they use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from crmsync.instants import canonical_instant

System = Literal["legacy", "2026-03-30"]
NEW_SYSTEM: Final = "2026-03-30"

#: legacy envelope `type`s that differ from the event names (research §4.1)
LEGACY_TYPES: Final[Mapping[str, str]] = {
    "callSummary": "call.summary.completed",
    "callTranscript": "call.transcript.completed",
}
#: event types whose resource is a call artefact naming its call in `callId`
CALL_ID_TYPES: Final = frozenset({
    "call.summary.completed", "call.transcript.completed", "call.voicemail.completed",
})
_CALL_TYPES: Final = frozenset({
    "call.ringing", "call.answered", "call.completed", "call.missed", "call.forwarded",
    "call.menu.selected", "call.recording.completed",
})
_MESSAGE_TYPES: Final = frozenset({
    "message.received", "message.delivered", "message.failed", "message.undelivered",
})
#: event type → the resource timestamp that tells one occurrence from a later one of
#: the same type and resource, chosen among the fields both systems' payloads carry;
#: None: the type happens once per resource (and neither format has a timestamp)
OCCURRENCE_STAMP: Final[Mapping[str, str | None]] = {
    **dict.fromkeys(_MESSAGE_TYPES, "createdAt"),
    **dict.fromkeys(_CALL_TYPES, "createdAt"),
    "call.summary.completed": None,
    "call.transcript.completed": "createdAt",
    "call.voicemail.completed": "createdAt",
    "contact.updated": "updatedAt",
    "contact.deleted": "updatedAt",
}
#: a longer business key is stored as its SHA-256 (ids are short; this bounds the index)
MAX_KEY_CHARS: Final = 256


class EnvelopeError(ValueError):
    """The body is not a Quo event envelope (no JSON object with an `id` and a `type`)."""


@dataclass(frozen=True, slots=True)
class QuoEnvelope:
    system: System
    event_id: str
    #: the type as sent (legacy AI events: `callSummary` / `callTranscript`)
    type: str
    #: `type` with the legacy spellings mapped to the event names
    event_type: str
    resource: dict[str, Any] = field(default_factory=dict)  # data.resource | data.object
    context: dict[str, Any] = field(default_factory=dict)  # data.context (legacy: {})
    links: dict[str, Any] = field(default_factory=dict)  # data.links (legacy: deepLink)
    created_at: str | None = None  # the envelope's (when the event occurred)

    @property
    def resource_id(self) -> str | None:
        return resource_id(self.event_type, self.resource)

    @property
    def business_key(self) -> str | None:
        return business_key(self.event_type, self.resource)

    @property
    def deep_link(self) -> str | None:
        link = self.links.get("quo")
        return link if isinstance(link, str) else None


def decode(body: bytes) -> QuoEnvelope:
    """The envelope of a raw delivery body; `EnvelopeError` if it is not one."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise EnvelopeError("body is not JSON") from exc
    return from_json(parsed)


def from_json(envelope: object) -> QuoEnvelope:
    """`decode` for an already parsed body."""
    if not isinstance(envelope, dict):
        raise EnvelopeError("the Quo event is not a JSON object")
    event_id, raw_type = envelope.get("id"), envelope.get("type")
    if not isinstance(event_id, str) or not event_id.strip():
        raise EnvelopeError("the Quo event has no 'id'")
    if not isinstance(raw_type, str) or not raw_type.strip():
        raise EnvelopeError("the Quo event has no 'type'")
    data = _object(envelope.get("data"))
    created = envelope.get("createdAt")
    common: dict[str, Any] = {
        "event_id": event_id, "type": raw_type, "event_type": normalise_type(raw_type),
        "created_at": created if isinstance(created, str) else None,
    }
    if system_of(envelope) == NEW_SYSTEM:
        return QuoEnvelope(
            system=NEW_SYSTEM, resource=_object(data.get("resource")),
            context=_object(data.get("context")), links=_object(data.get("links")), **common,
        )
    deep_link = data.get("deepLink")
    return QuoEnvelope(
        system="legacy", resource=_object(data.get("object")),
        links={"quo": deep_link} if isinstance(deep_link, str) else {}, **common,
    )


def system_of(envelope: Mapping[str, Any]) -> System:
    """`data.resource` (or, without `data`, a dated `apiVersion`) means the new system."""
    data = envelope.get("data")
    if isinstance(data, dict):
        if "resource" in data:
            return NEW_SYSTEM
        if "object" in data:
            return "legacy"
    return NEW_SYSTEM if envelope.get("apiVersion") == NEW_SYSTEM else "legacy"


def normalise_type(event_type: str) -> str:
    return LEGACY_TYPES.get(event_type, event_type)


def resource_id(event_type: str, resource: Mapping[str, Any]) -> str | None:
    """The id of what the event is about: `callId` for call artefacts, else `id`.

    A voicemail whose `callId` is null (no call to correlate) falls back to its own id.
    """
    kind = normalise_type(event_type)
    names = ("callId", "id") if kind in CALL_ID_TYPES else ("id",)
    for name in names:
        value = resource.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def business_key(event_type: str, resource: Mapping[str, Any]) -> str | None:
    """The key of this occurrence, the same through both systems; None when the type
    or the resource does not say enough to tell occurrences apart (module docstring)."""
    kind = normalise_type(event_type)
    if kind not in OCCURRENCE_STAMP:
        return None
    rid = resource_id(kind, resource)
    if rid is None:
        return None
    parts = [kind, rid]
    stamp_field = OCCURRENCE_STAMP[kind]
    if stamp_field is not None:
        stamp = normalise_time(resource.get(stamp_field))
        if stamp is None:
            return None
        parts.append(stamp)
    # JSON: unambiguous whatever the id holds, and always ASCII (so always storable).
    key = json.dumps(parts, separators=(",", ":"))
    if len(key) > MAX_KEY_CHARS:
        return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def normalise_time(value: object) -> str | None:
    """An ISO 8601 time as UTC with milliseconds (`2026-04-13T12:00:00.000Z`), so both
    systems' spellings of one instant compare equal; None if it is not one."""
    return canonical_instant(value)


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
