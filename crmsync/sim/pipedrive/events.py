"""v2 webhook bodies: `{"data", "previous", "meta"}` for one person event.

`data` is the slim person (`Person.slim`), null on delete; `previous` holds the old
values of the fields that changed (null on create, the slim person on delete). `meta.id`
identifies the event and stays the same on every retry; `meta.attempt` is set per
attempt by the deliverer. A merge's delete and change share one `correlation_id`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from crmsync.sim.pipedrive.model import JSONObject

Action = Literal["create", "change", "delete"]
ChangeSource = Literal["app", "api"]


@dataclass(frozen=True, slots=True)
class PersonEvent:
    action: Action
    person_id: int
    data: JSONObject | None
    previous: JSONObject | None
    source: ChangeSource
    event_id: str
    correlation_id: str


@dataclass(frozen=True, slots=True)
class Company:
    """Who the events come from."""

    company_id: int
    user_id: int
    host: str


def timestamp(moment: datetime) -> str:
    """`2025-01-01T10:20:00.123Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def body(event: PersonEvent, company: Company, webhook_id: int, at: datetime) -> JSONObject:
    return {
        "data": event.data,
        "previous": event.previous,
        "meta": {
            "action": event.action,
            "entity": "person",
            "entity_id": str(event.person_id),
            "company_id": str(company.company_id),
            "user_id": str(company.user_id),
            "id": event.event_id,
            "correlation_id": event.correlation_id,
            "timestamp": timestamp(at),
            "change_source": event.source,
            "is_bulk_edit": False,
            "attempt": 1,
            "webhook_id": str(webhook_id),
            "version": "2.0",
            "host": company.host,
        },
    }
