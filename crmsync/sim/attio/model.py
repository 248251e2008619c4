"""Records as Attio stores them: every attribute is a list of values with history.

A value is active while `active_until` is null. Changing a single-value attribute
closes the current value (sets `active_until`) and appends a new one, so a client that
reads `values[attr][0]` without checking `active_until` sees stale data, as it would
against the real API.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JSONObject = dict[str, Any]

# Fields every value carries besides its payload; ignored when comparing payloads.
VALUE_METADATA = frozenset({"active_from", "active_until", "created_by_actor", "attribute_type"})

ATTRIBUTE_TYPES: dict[str, dict[str, str]] = {
    "people": {
        "name": "personal-name",
        "email_addresses": "email-address",
        "phone_numbers": "phone-number",
        "job_title": "text",
        "company": "record-reference",
        "description": "text",
        "created_at": "timestamp",
        "created_by": "actor-reference",
    },
    "companies": {
        "name": "text",
        "domains": "domain",
        "description": "text",
        "created_at": "timestamp",
        "created_by": "actor-reference",
    },
}
WEB_URL_NOUN = {"people": "person", "companies": "company"}
OBJECT_NOUNS = {"people": ("Person", "People"), "companies": ("Company", "Companies")}


@functools.lru_cache(maxsize=4096)
def format_timestamp(moment: datetime) -> str:
    """Attio's timestamp format: UTC with nanosecond precision, `Z` suffix.

    Cached: seeding stamps every value of a record with the same moment.
    """
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"


def random_uuid(bits: int) -> str:
    return str(uuid.UUID(int=bits, version=4))


@dataclass(frozen=True, slots=True)
class Workspace:
    """Identity of the simulated workspace and the ids derived from it."""

    workspace_id: str
    slug: str
    name: str
    member_id: str
    created_at: datetime

    def object_id(self, object_slug: str) -> str:
        return str(uuid.uuid5(uuid.UUID(self.workspace_id), f"object:{object_slug}"))

    def attribute_id(self, object_slug: str, attribute: str) -> str:
        return str(uuid.uuid5(uuid.UUID(self.workspace_id), f"attr:{object_slug}:{attribute}"))

    def object_slug(self, slug_or_id: str) -> str | None:
        """Accept an object's slug or id, as Attio does; None when unknown."""
        for slug in ATTRIBUTE_TYPES:
            if slug_or_id in (slug, self.object_id(slug)):
                return slug
        return None

    def member_actor(self) -> JSONObject:
        return {"type": "workspace-member", "id": self.member_id}


@dataclass(slots=True)
class StoredRecord:
    """One person or company with the full history of its attribute values."""

    object_slug: str
    record_id: str
    created_at: datetime
    values: dict[str, list[JSONObject]] = field(default_factory=dict)

    def active(self, attribute: str) -> list[JSONObject]:
        return [v for v in self.values.get(attribute, []) if v["active_until"] is None]

    def first_active(self, attribute: str) -> JSONObject | None:
        current = self.active(attribute)
        return current[0] if current else None

    def append(
        self, attribute: str, payload: JSONObject, *, at: datetime, actor: JSONObject
    ) -> JSONObject:
        value = {
            **payload,
            "attribute_type": ATTRIBUTE_TYPES[self.object_slug][attribute],
            "active_from": format_timestamp(at),
            "active_until": None,
            "created_by_actor": dict(actor),
        }
        self.values.setdefault(attribute, []).append(value)
        return value

    def set_values(
        self, attribute: str, payloads: list[JSONObject], *, at: datetime, actor: JSONObject
    ) -> bool:
        """Make `payloads` the active values; close the rest. True when anything changed.

        Unchanged payloads keep their value (and `active_from`), like Attio's
        multi-select attributes; single-value attributes pass a list of at most one.
        """
        current = self.active(attribute)
        keep: list[JSONObject] = []
        for value in current:
            if any(_same_payload(value, p) for p in payloads) and not any(
                _same_payload(value, k) for k in keep
            ):
                keep.append(value)
        closed = [v for v in current if not any(v is k for k in keep)]
        added = [p for p in payloads if not any(_same_payload(k, p) for k in keep)]
        for value in closed:
            value["active_until"] = format_timestamp(at)
        for payload in added:
            self.append(attribute, payload, at=at, actor=actor)
        return bool(closed or added)

    def render(self, workspace: Workspace) -> JSONObject:
        values: dict[str, list[JSONObject]] = {a: [] for a in ATTRIBUTE_TYPES[self.object_slug]}
        values.update(self.values)
        return {
            "id": {
                "workspace_id": workspace.workspace_id,
                "object_id": workspace.object_id(self.object_slug),
                "record_id": self.record_id,
            },
            "created_at": format_timestamp(self.created_at),
            "web_url": (
                f"https://app.attio.com/{workspace.slug}/"
                f"{WEB_URL_NOUN[self.object_slug]}/{self.record_id}"
            ),
            "values": values,
        }


def _same_payload(value: JSONObject, payload: JSONObject) -> bool:
    keys = (value.keys() | payload.keys()) - VALUE_METADATA
    return all(value.get(k) == payload.get(k) for k in keys)


def personal_name(first_name: str, last_name: str, full_name: str) -> JSONObject:
    return {"first_name": first_name, "last_name": last_name, "full_name": full_name}


def email_address(original: str) -> JSONObject:
    normalized = original.strip().lower()
    local, _, domain = normalized.partition("@")
    return {
        "original_email_address": original,
        "email_address": normalized,
        "email_domain": domain,
        "email_root_domain": root_domain(domain),
        "email_local_specifier": local.split("+", 1)[0],
    }


def text(value: str) -> JSONObject:
    return {"value": value}


def reference(target_object: str, target_record_id: str) -> JSONObject:
    return {"target_object": target_object, "target_record_id": target_record_id}


def domain(name: str) -> JSONObject:
    return {"domain": name, "root_domain": root_domain(name)}


def root_domain(name: str) -> str:
    return ".".join(name.split(".")[-2:])


def creation_values(
    record: StoredRecord, *, actor: JSONObject, actor_type: str = "workspace-member"
) -> None:
    """The read-only `created_at` / `created_by` attributes every record has."""
    record.append(
        "created_at", {"value": format_timestamp(record.created_at)},
        at=record.created_at, actor=actor,
    )
    record.append(
        "created_by",
        {"referenced_actor_type": actor_type, "referenced_actor_id": actor.get("id")},
        at=record.created_at, actor=actor,
    )
