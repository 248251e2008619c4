"""Request bodies of the 2026-03-30 webhook API: create, PATCH and test events.

Strict like the real schema: unknown properties, a wrong type, an empty `events`, an
event outside the GA enum, a `resourceIds` that is neither `PN…` ids nor `["*"]`, or an
empty PATCH are 400s that list every failing field. `resourceIds` may be `[]` or `null`
in a PATCH only (both clear the filter, stored as `["*"]`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from crmsync.sim.quo.wire_v2 import JsonObject, invalid_fields

MESSAGE_EVENTS = ("message.received", "message.delivered", "message.failed", "message.undelivered")
CALL_EVENTS = (
    "call.ringing", "call.answered", "call.completed", "call.missed", "call.forwarded",
    "call.menu.selected", "call.recording.completed", "call.transcript.completed",
    "call.summary.completed", "call.voicemail.completed",
)
CONTACT_EVENTS = ("contact.updated", "contact.deleted")
TASK_EVENTS = (
    "task.created", "task.updated", "task.deleted", "task.completed", "task.reopened",
    "task.assigned", "task.unassigned", "task.overdue", "task.linked", "task.unlinked",
    "task.duedate.updated", "task.duedate.removed",
)
INTEGRATION_EVENTS = ("integration.created", "integration.updated", "integration.deleted")
EVENT_TYPES = frozenset(
    (*MESSAGE_EVENTS, *CALL_EVENTS, *CONTACT_EVENTS, *TASK_EVENTS, *INTEGRATION_EVENTS)
)
CREATE_FIELDS = frozenset({"url", "events", "resourceIds", "status", "label"})
PN_ID = re.compile(r"^PN[A-Za-z0-9]+$")
STATUSES = ("enabled", "disabled")


class _Check:
    """Collects field errors; `done()` raises them all as one 400."""

    def __init__(self) -> None:
        self.errors: list[JsonObject] = []

    def fail(self, path: str, message: str, value: Any, schema: JsonObject) -> None:
        self.errors.append({"path": path, "message": message, "value": value, "schema": schema})

    def done(self) -> None:
        if self.errors:
            raise invalid_fields(self.errors)


def _object(body: Any) -> JsonObject:
    if not isinstance(body, dict):
        raise invalid_fields(
            [{"path": "/body", "message": "Expected object", "value": body,
              "schema": {"type": "object"}}]
        )
    return body


def _unknown(check: _Check, body: JsonObject) -> None:
    for name in sorted(set(body) - CREATE_FIELDS):
        check.fail(f"/{name}", "Unexpected property", body[name], {"not": {}})


def _url(check: _Check, body: JsonObject) -> None:
    url = body["url"]
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        check.fail("/url", "Expected string to match 'uri' format", url,
                   {"type": "string", "format": "uri"})


def _events(check: _Check, events: Any) -> None:
    schema = {"type": "array", "minItems": 1}
    if not isinstance(events, list):
        check.fail("/events", "Expected array", events, schema)
    elif not events:
        check.fail("/events", "Expected array length greater or equal to 1", events, schema)
    else:
        for index, event in enumerate(events):
            if event not in EVENT_TYPES:
                check.fail(f"/events/{index}", "Expected union value", event, {"type": "string"})


def _resource_ids(check: _Check, ids: Any, *, clearing_allowed: bool) -> None:
    if clearing_allowed and (ids is None or ids == []):
        return
    if (
        not isinstance(ids, list) or not ids
        or not all(isinstance(i, str) for i in ids)
        or not (ids == ["*"] or all(PN_ID.match(i) for i in ids))
    ):
        check.fail("/resourceIds", "Expected union value", ids, {"type": "array"})


def _status_and_label(check: _Check, body: JsonObject, *, label_nullable: bool) -> None:
    if "status" in body and body["status"] not in STATUSES:
        check.fail("/status", "Expected union value", body["status"], {"enum": list(STATUSES)})
    label = body.get("label")
    if "label" in body and not (isinstance(label, str) or (label is None and label_nullable)):
        check.fail("/label", "Expected string", label, {"type": "string"})


def validate_create(raw: Any) -> JsonObject:
    """A valid `POST /webhooks` body, or a 400 listing every bad field."""
    body = _object(raw)
    check = _Check()
    _unknown(check, body)
    for name in ("url", "events"):
        if name not in body:
            check.fail(f"/{name}", "Expected required property", None, {"type": "string"})
    if "url" in body:
        _url(check, body)
    if "events" in body:
        _events(check, body["events"])
    if "resourceIds" in body:
        _resource_ids(check, body["resourceIds"], clearing_allowed=False)
    _status_and_label(check, body, label_nullable=False)
    check.done()
    return body


def validate_patch(raw: Any) -> JsonObject:
    """A valid `PATCH /webhooks/{id}` body (at least one property)."""
    body = _object(raw)
    check = _Check()
    if not body:
        check.fail("/body", "Expected object to have at least 1 properties", body,
                   {"type": "object", "minProperties": 1})
    _unknown(check, body)
    if "url" in body:
        _url(check, body)
    if "events" in body:
        _events(check, body["events"])
    if "resourceIds" in body:
        _resource_ids(check, body["resourceIds"], clearing_allowed=True)
    _status_and_label(check, body, label_nullable=True)
    check.done()
    return body


def validate_test_event(raw: Any) -> str:
    """The `eventType` of a `POST /webhooks/{id}/events/test` body."""
    body = _object(raw)
    check = _Check()
    event_type = body.get("eventType")
    if "eventType" not in body:
        check.fail("/eventType", "Expected required property", None, {"type": "string"})
    elif event_type not in EVENT_TYPES:
        check.fail("/eventType", "Expected union value", event_type, {"type": "string"})
    for name in sorted(set(body) - {"eventType"}):
        check.fail(f"/{name}", "Unexpected property", body[name], {"not": {}})
    check.done()
    return str(event_type)
