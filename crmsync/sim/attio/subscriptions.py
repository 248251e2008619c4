"""Webhook objects: validating create/update input, filters, and the API rendering."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from crmsync.sim.attio.errors import JSONObject, validation_error
from crmsync.sim.attio.model import Workspace, format_timestamp

EVENT_TYPES = frozenset({
    "call-recording.created", "comment.created", "comment.resolved", "comment.unresolved",
    "comment.deleted", "list.created", "list.updated", "list.deleted",
    "list-attribute.created", "list-attribute.updated", "list-entry.created",
    "list-entry.updated", "list-entry.deleted", "object-attribute.created",
    "object-attribute.updated", "note.created", "note-content.updated", "note.updated",
    "note.deleted", "record.created", "record.merged", "record.updated", "record.deleted",
    "task.created", "task.updated", "task.deleted", "workspace-member.created",
})
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(slots=True)
class Webhook:
    webhook_id: str
    target_url: str
    subscriptions: list[JSONObject]
    secret: str
    created_at: datetime
    status: str = "active"

    def render(self, workspace: Workspace, *, with_secret: bool = False) -> JSONObject:
        body: JSONObject = {
            "id": {"workspace_id": workspace.workspace_id, "webhook_id": self.webhook_id},
            "target_url": self.target_url,
            "subscriptions": self.subscriptions,
            "status": self.status,
            "created_at": format_timestamp(self.created_at),
        }
        if with_secret:
            body["secret"] = self.secret
        return body

    def wants(self, event: JSONObject) -> bool:
        """Subscribed to this event type, and the subscription's filter matches."""
        return self.status != "inactive" and any(
            sub["event_type"] == event["event_type"] and _filter_matches(sub["filter"], event)
            for sub in self.subscriptions
        )


def validate_target_url(value: Any, *, allow_http_loopback: bool) -> str:
    if not isinstance(value, str):
        raise validation_error('"target_url" must be a string.')
    parts = urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if (
        allow_http_loopback and parts.scheme == "http"
        and parts.hostname in LOOPBACK_HOSTS
    ):
        return value
    raise validation_error('"target_url" must be an https:// URL.')


def validate_subscriptions(value: Any) -> list[JSONObject]:
    if not isinstance(value, list):
        raise validation_error('"subscriptions" must be an array.')
    result = []
    for sub in value:
        if not isinstance(sub, dict) or set(sub) != {"event_type", "filter"}:
            raise validation_error('Each subscription needs exactly "event_type" and "filter".')
        if sub["event_type"] not in EVENT_TYPES:
            raise validation_error(f"Unknown event_type {sub['event_type']!r}.")
        _validate_filter(sub["filter"])
        result.append({"event_type": sub["event_type"], "filter": sub["filter"]})
    return result


def _validate_filter(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in ("$and", "$or"):
        raise validation_error('A subscription filter is null or {"$and"|"$or": [...]}.')
    conditions = next(iter(value.values()))
    if not isinstance(conditions, list):
        raise validation_error("A subscription filter holds an array of conditions.")
    for cond in conditions:
        if (
            not isinstance(cond, dict) or set(cond) != {"field", "operator", "value"}
            or cond["operator"] not in ("equals", "not_equals")
            or not isinstance(cond["field"], str) or not isinstance(cond["value"], str)
        ):
            raise validation_error(
                'A filter condition is {"field", "operator": "equals"|"not_equals", "value"}.'
            )


def _filter_matches(spec: JSONObject | None, event: JSONObject) -> bool:
    if spec is None:
        return True
    ((combinator, conditions),) = spec.items()
    results = []
    for cond in conditions:
        actual = _lookup(event, cond["field"])
        equal = actual == cond["value"]
        results.append(equal if cond["operator"] == "equals" else not equal)
    return all(results) if combinator == "$and" else any(results)


def _lookup(event: JSONObject, dotted: str) -> Any:
    current: Any = event
    for part in dotted.split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current
