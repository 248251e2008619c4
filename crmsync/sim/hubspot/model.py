"""HubSpot CRM objects as the simulator stores them, their property schemas and times.

One `CrmObject` class serves contacts, companies and notes: HubSpot's v3 object API
treats them alike (numeric ids, string property values, `createdAt` / `updatedAt`,
archiving instead of deletion). Only non-empty property values are stored; the
computed ones (create and modify dates, `hs_object_id`) come from the object's fields.
Associations are kept on both ends in `links` (other object type -> ids, oldest first);
a contact's primary company is `primary_company`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSONObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Schema:
    """Properties of one object type, as the simulated portal defines them."""

    object_type: str  # "contacts": the URL segment
    label: str  # "CONTACT": HubSpot's name in messages
    type_id: str  # "0-1": in record URLs
    writable: frozenset[str]
    created: str  # the create-date property
    modified: str  # the last-modified property
    defaults: tuple[str, ...]  # returned when a read names no properties
    read_only: frozenset[str] = frozenset()
    dates: frozenset[str] = frozenset()  # writable datetime properties
    searchable: tuple[str, ...] = ()  # what a free-text `query` looks at

    @property
    def computed(self) -> frozenset[str]:
        return frozenset({self.created, self.modified, "hs_object_id"})

    def known(self, name: str) -> bool:
        return name in self.writable or name in self.read_only or name in self.computed


CONTACTS = Schema(
    "contacts", "CONTACT", "0-1",
    frozenset({"firstname", "lastname", "email", "hs_additional_emails", "phone",
               "mobilephone", "jobtitle", "company", "hs_country_region_code", "website",
               "city", "country", "lifecyclestage"}),
    "createdate", "lastmodifieddate", ("firstname", "lastname", "email"),
    read_only=frozenset({"hs_merged_object_ids"}),
    searchable=("firstname", "lastname", "email", "phone", "mobilephone", "company"),
)
COMPANIES = Schema(
    "companies", "COMPANY", "0-2", frozenset({"name", "domain", "city", "country"}),
    "createdate", "hs_lastmodifieddate", ("name", "domain"), searchable=("name", "domain"),
)
NOTES = Schema(
    "notes", "NOTE", "0-46",
    frozenset({"hs_note_body", "hs_timestamp", "hubspot_owner_id", "hs_attachment_ids"}),
    "hs_createdate", "hs_lastmodifieddate", (), dates=frozenset({"hs_timestamp"}),
)
SCHEMAS = {schema.object_type: schema for schema in (CONTACTS, COMPANIES, NOTES)}


@dataclass(slots=True, eq=False)
class CrmObject:
    """One contact, company or note (archived ones are kept, as HubSpot keeps them)."""

    schema: Schema
    id: int
    created_ms: int
    updated_ms: int
    properties: dict[str, str] = field(default_factory=dict)
    archived: bool = False
    archived_ms: int | None = None
    links: dict[str, list[int]] = field(default_factory=dict)
    primary_company: int | None = None
    merged_into: int | None = None  # a contact merged away: its id resolves to this one
    # search's eventual consistency: until `visible_at` (monotonic) search sees `stale`
    # (None: the object is not indexed yet)
    stale: CrmObject | None = None
    visible_at: float = 0.0

    def value(self, name: str) -> str | None:
        """A property as the API shows it: a string, or None when it has no value."""
        schema = self.schema
        if name == schema.created:
            return iso(self.created_ms)
        if name == schema.modified:
            return iso(self.updated_ms)
        if name == "hs_object_id":
            return str(self.id)
        return self.properties.get(name)

    def linked(self, object_type: str) -> list[int]:
        return self.links.get(object_type, [])

    def companies_primary_first(self) -> list[int]:
        """Associated company ids, the primary one first, then in association order."""
        ids = self.linked("companies")
        if self.primary_company in ids:
            return [self.primary_company, *(i for i in ids if i != self.primary_company)]
        return list(ids)

    def render(self, properties: list[str] | None) -> JSONObject:
        """The v3 object JSON with the asked `properties` (None: the type's defaults)."""
        names = self.schema.defaults if properties is None else properties
        shown: JSONObject = {}
        for name in (*names, *self.schema.computed):
            if self.schema.known(name):
                shown[name] = self.value(name)
        body: JSONObject = {
            "id": str(self.id), "properties": shown, "createdAt": iso(self.created_ms),
            "updatedAt": iso(self.updated_ms), "archived": self.archived,
        }
        if self.archived and self.archived_ms is not None:
            body["archivedAt"] = iso(self.archived_ms)
        return body

    def search_copy(self) -> CrmObject:
        """A frozen-in-time copy for the search index (links are not searched)."""
        return CrmObject(self.schema, self.id, self.created_ms, self.updated_ms,
                         dict(self.properties), self.archived, self.archived_ms)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int) -> str:
    """`2025-01-01T10:00:00.000Z`: HubSpot's times, always with milliseconds."""
    seconds, millis = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def parse_time(raw: object) -> int | None:
    """Epoch milliseconds from `1735725600000` / `"1735725600000"` / an ISO 8601 string."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return None
    text = raw.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)
