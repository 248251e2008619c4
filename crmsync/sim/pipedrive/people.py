"""Person fields as the API (and the admin routes) accept them, and applying them.

`parse_fields` checks a create or PATCH body field by field (a 400 names the field):
`name` is required on create unless `first_name`/`last_name` are given; `emails` and
`phones` are lists of `{"value", "primary", "label"}` (labels `work|home|other` for
emails, `work|home|mobile|other` for phones); `org_id` must be an existing
organization. The admin routes and the Python helpers also take plain strings in the
lists (`lenient=True`). Values are kept as typed: Pipedrive does not normalise phones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from crmsync.sim.pipedrive.errors import PipedriveError, invalid, only
from crmsync.sim.pipedrive.model import JSONObject, Person

PERSON_FIELDS = frozenset({
    "name", "first_name", "last_name", "owner_id", "org_id", "emails", "phones",
    "job_title", "visible_to", "label_ids", "add_time", "custom_fields", "marketing_status",
})
TEXT_FIELDS = ("name", "first_name", "last_name", "job_title")
NAME_AND_TIME = frozenset({"name", "first_name", "last_name", "add_time"})
LABELS = {"emails": ("work", "home", "other"), "phones": ("work", "home", "mobile", "other")}
DEFAULT_LABEL = {"emails": "work", "phones": "mobile"}
#: fields whose change a webhook's `previous` reports
TRACKED = ("name", "first_name", "last_name", "emails", "phones", "job_title", "org_id")


def parse_fields(
    body: Mapping[str, Any],
    *,
    creating: bool,
    strict: bool,
    org_exists: Callable[[int], bool],
    parse_time: Callable[[str], datetime] | None = None,
    lenient: bool = False,
) -> JSONObject:
    """The validated changes of one create or update."""
    only(body, PERSON_FIELDS, strict=strict)
    changes: JSONObject = {}
    for name in TEXT_FIELDS:
        if name in body:
            value = body[name]
            if value is not None and not isinstance(value, str):
                raise invalid(name, "must be a string")
            # An empty string clears a field, except the name, which is checked below.
            changes[name] = value if name == "name" else value or None
    if "name" in changes and not (changes["name"] or "").strip():
        raise invalid("name", "must not be empty")
    if creating and not (changes.get("name") or changes.get("first_name")
                         or changes.get("last_name")):
        raise invalid("name", "is required unless first_name or last_name is given")
    for name in ("emails", "phones"):
        if name in body:
            changes[name] = _entries(name, body[name], lenient=lenient)
    if "org_id" in body:
        changes["org_id"] = _org_id(body["org_id"], org_exists, lenient=lenient)
    if "owner_id" in body and not isinstance(body["owner_id"], int):
        raise invalid("owner_id", "must be an integer")
    if "label_ids" in body:
        labels = body["label_ids"]
        if not isinstance(labels, list) or not all(isinstance(i, int) for i in labels):
            raise invalid("label_ids", "must be a list of integers")
        changes["label_ids"] = list(labels)
    if "custom_fields" in body:
        if not isinstance(body["custom_fields"], dict):
            raise invalid("custom_fields", "must be an object")
        changes["custom_fields"] = dict(body["custom_fields"])
    if "add_time" in body and parse_time is not None:
        if not creating or not isinstance(body["add_time"], str):
            raise invalid("add_time", "can only be set on create, as an RFC 3339 string")
        changes["add_time"] = parse_time(body["add_time"])
    return changes


def apply(person: Person, changes: Mapping[str, Any], *, at: datetime) -> JSONObject:
    """Apply `changes`; the previous values of the tracked fields that changed."""
    before = {name: _copy(getattr(person, name)) for name in TRACKED}
    for name in ("name", "first_name", "last_name", "job_title", "org_id"):
        if name in changes:
            setattr(person, name, changes[name])
    if "name" not in changes and ({"first_name", "last_name"} & set(changes)):
        # A name is always there: from the parts when only they are given.
        joined = " ".join(p for p in (person.first_name, person.last_name) if p)
        person.name = joined or person.name
    for name in ("emails", "phones"):
        if name in changes:
            setattr(person, name, [dict(e) for e in changes[name]])
    if "label_ids" in changes:
        person.label_ids = list(changes["label_ids"])
    if "custom_fields" in changes:
        person.custom_fields = dict(changes["custom_fields"])
    previous = {n: old for n, old in before.items() if getattr(person, n) != old}
    if previous or {"label_ids", "custom_fields"} & set(changes):
        person.update_time = at
    return previous


def new_person(person_id: int, changes: Mapping[str, Any], *, owner_id: int, at: datetime
               ) -> Person:
    first, last = changes.get("first_name"), changes.get("last_name")
    name = changes.get("name") or " ".join(p for p in (first, last) if p)
    person = Person(person_id, name, first, last, changes.get("add_time", at), at, owner_id)
    apply(person, {k: v for k, v in changes.items() if k not in NAME_AND_TIME}, at=at)
    return person


def merged_lists(survivor: list[JSONObject], loser: list[JSONObject]) -> list[JSONObject]:
    """The survivor's entries, then the loser's it does not have (never primary)."""
    values = {str(e["value"]) for e in survivor}
    extra = [{**e, "primary": False} for e in loser if str(e["value"]) not in values]
    return [dict(e) for e in survivor] + extra


def _entries(name: str, raw: object, *, lenient: bool) -> list[JSONObject]:
    if not isinstance(raw, list):
        raise invalid(name, "must be a list of objects with value, primary and label")
    result: list[JSONObject] = []
    for index, entry in enumerate(raw):
        if lenient and isinstance(entry, str):
            entry = {"value": entry, "primary": index == 0, "label": DEFAULT_LABEL[name]}
        if not isinstance(entry, dict) or not isinstance(entry.get("value"), str):
            raise invalid(f"{name}[{index}]", "must be an object with a string value")
        unknown = set(entry) - {"value", "primary", "label"}
        if unknown:
            raise invalid(f"{name}[{index}]", f"unknown key {sorted(unknown)[0]}")
        primary = entry.get("primary", False)
        if not isinstance(primary, bool):
            raise invalid(f"{name}[{index}].primary", "must be a boolean")
        label = entry.get("label", DEFAULT_LABEL[name])
        if label not in LABELS[name]:
            raise invalid(f"{name}[{index}].label", f"must be one of {', '.join(LABELS[name])}")
        result.append({"value": entry["value"], "primary": primary, "label": label})
    if result and not any(e["primary"] for e in result):
        result[0]["primary"] = True  # Pipedrive makes the first one primary
    return result


def _org_id(raw: object, org_exists: Callable[[int], bool], *, lenient: bool) -> int | None:
    if raw is None:
        return None
    if lenient and isinstance(raw, str) and raw.isdigit():
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise invalid("org_id", "must be an integer or null")
    if not org_exists(raw):
        raise PipedriveError(400, f"Validation failed: org_id: organization {raw} not found")
    return raw


def _copy(value: object) -> object:
    if isinstance(value, list):
        return [dict(e) if isinstance(e, dict) else e for e in value]
    return value
