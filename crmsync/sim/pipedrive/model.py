"""Persons, organizations and notes as the simulator stores them, and their JSON shapes.

Times are whole seconds in UTC, as Pipedrive keeps them: RFC 3339 (`...Z`) in v2
answers, `YYYY-MM-DD HH:MM:SS` in v1. Emails and phones are lists of
`{"value", "primary", "label"}` with the value exactly as typed (a phone is never
normalised: `(415) 555-0134` means the company's country).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSONObject = dict[str, Any]
VISIBLE_TO_COMPANY = 3
#: what a v2 webhook's `data` carries of a person (fetch the rest through the API)
WEBHOOK_FIELDS = (
    "id", "name", "first_name", "last_name", "emails", "phones", "org_id", "update_time",
)


def v2_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def v1_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def whole_seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


@dataclass(slots=True)
class Person:
    """One person; a deleted one stays stored (`is_deleted`) but is never served."""

    id: int
    name: str
    first_name: str | None
    last_name: str | None
    add_time: datetime
    update_time: datetime
    owner_id: int
    org_id: int | None = None
    emails: list[JSONObject] = field(default_factory=list)
    phones: list[JSONObject] = field(default_factory=list)
    job_title: str | None = None
    is_deleted: bool = False
    label_ids: list[int] = field(default_factory=list)
    custom_fields: JSONObject = field(default_factory=dict)

    def render(self) -> JSONObject:
        """The v2 API shape."""
        return {
            "id": self.id,
            "name": self.name,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "owner_id": self.owner_id,
            "org_id": self.org_id,
            "add_time": v2_time(self.add_time),
            "update_time": v2_time(self.update_time),
            "is_deleted": self.is_deleted,
            "visible_to": VISIBLE_TO_COMPANY,
            "emails": [dict(e) for e in self.emails],
            "phones": [dict(p) for p in self.phones],
            "job_title": self.job_title,
            "label_ids": list(self.label_ids),
            "custom_fields": dict(self.custom_fields),
        }

    def slim(self) -> JSONObject:
        """What a v2 webhook's `data` (or a delete's `previous`) carries."""
        full = self.render()
        return {name: full[name] for name in WEBHOOK_FIELDS}

    def phone_values(self) -> list[str]:
        return [str(p["value"]) for p in self.phones]

    def email_values(self) -> list[str]:
        return [str(e["value"]) for e in self.emails]


@dataclass(slots=True)
class Organization:
    id: int
    name: str
    add_time: datetime
    owner_id: int
    domain: str | None = None  # not an API field: where seeded people's work emails go

    def render(self) -> JSONObject:
        return {
            "id": self.id,
            "name": self.name,
            "owner_id": self.owner_id,
            "add_time": v2_time(self.add_time),
            "update_time": v2_time(self.add_time),
            "is_deleted": False,
            "visible_to": VISIBLE_TO_COMPANY,
            "address": None,
            "label_ids": [],
            "custom_fields": {},
        }


@dataclass(slots=True)
class Note:
    id: int
    content: str
    person_id: int | None
    org_id: int | None
    user_id: int
    add_time: datetime
    update_time: datetime
    pinned_to_person_flag: bool = False

    def render(self, person: Person | None, org: Organization | None, user: JSONObject
               ) -> JSONObject:
        """The v1 API shape."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "deal_id": None,
            "person_id": self.person_id,
            "org_id": self.org_id,
            "lead_id": None,
            "project_id": None,
            "content": self.content,
            "add_time": v1_time(self.add_time),
            "update_time": v1_time(self.update_time),
            "active_flag": True,
            "pinned_to_deal_flag": False,
            "pinned_to_person_flag": self.pinned_to_person_flag,
            "pinned_to_organization_flag": False,
            "pinned_to_lead_flag": False,
            "last_update_user_id": None,
            "person": None if person is None else {"name": person.name},
            "organization": None if org is None else {"name": org.name},
            "deal": None,
            "lead": None,
            "user": user,
        }


@dataclass(slots=True)
class Webhook:
    id: int
    subscription_url: str
    event_action: str
    event_object: str
    user_id: int
    company_id: int
    add_time: datetime
    name: str | None = None
    http_auth_user: str | None = None
    http_auth_password: str | None = None
    is_active: bool = True
    last_delivery_time: datetime | None = None
    last_http_status: int | None = None

    def wants(self, action: str, entity: str) -> bool:
        return (
            self.is_active
            and self.event_action in ("*", action)
            and self.event_object in ("*", entity)
        )

    def render(self) -> JSONObject:
        """The v1 shape; the password is never shown back."""
        return {
            "id": self.id,
            "company_id": self.company_id,
            "owner_id": self.user_id,
            "user_id": self.user_id,
            "event_action": self.event_action,
            "event_object": self.event_object,
            "subscription_url": self.subscription_url,
            "version": "2.0",
            "is_active": 1 if self.is_active else 0,
            "add_time": v1_time(self.add_time),
            "remove_time": None,
            "type": "general",
            "name": self.name,
            "http_auth_user": self.http_auth_user,
            "http_auth_password": None if self.http_auth_password is None else "*****",
            "additional_data": {},
            "last_delivery_time": (
                None if self.last_delivery_time is None else v1_time(self.last_delivery_time)
            ),
            "last_http_status": self.last_http_status,
            "admin_id": self.user_id,
        }
