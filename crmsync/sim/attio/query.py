"""Filters and sorts of `POST /v2/objects/{object}/records/query`, evaluated in memory.

Supported filter grammar (anything else is Attio's 400 `filter_error`):

* `{"$and": [f, ...]}`, `{"$or": [f, ...]}`, `{"$not": f}`; several keys in one object
  are ANDed.
* `record_id`: `"<id>"`, `{"$eq": id}`, `{"$in": [ids]}`.
* `created_at`: `{"$eq"|"$gt"|"$gte"|"$lt"|"$lte": timestamp}`.
* attributes (current values only): shorthand `{"phone_numbers": "+1555..."}` (exact
  E.164 match), `{"email_addresses": "a@b.com"}`, `{"name": "Ada Lovelace"}`; or
  verbose `{attr: {field: {op: value}}}` / `{attr: {op: value}}` on the attribute's
  default field, with `$eq`, `$in`, `$contains`, `$starts_with`, `$ends_with`,
  `$not_empty`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from datetime import datetime
from typing import Any

from crmsync.sim.attio.errors import filter_error, validation_error
from crmsync.sim.attio.model import StoredRecord

Predicate = Callable[[StoredRecord], bool]

# attribute -> (default field, allowed fields)
FIELDS: dict[str, dict[str, tuple[str, frozenset[str]]]] = {
    "people": {
        "name": ("full_name", frozenset({"first_name", "last_name", "full_name"})),
        "email_addresses": ("email_address", frozenset(
            {"email_address", "original_email_address", "email_domain"})),
        "phone_numbers": ("phone_number", frozenset(
            {"phone_number", "original_phone_number", "country_code"})),
        "job_title": ("value", frozenset({"value"})),
        "company": ("target_record_id", frozenset({"target_record_id"})),
    },
    "companies": {
        "name": ("value", frozenset({"value"})),
        "domains": ("domain", frozenset({"domain", "root_domain"})),
    },
}

_STRING_OPS: dict[str, Callable[[str, Any], bool]] = {
    "$eq": lambda have, want: have == want,
    "$contains": lambda have, want: isinstance(want, str) and want.lower() in have.lower(),
    "$starts_with": lambda have, want: isinstance(want, str) and have.startswith(want),
    "$ends_with": lambda have, want: isinstance(want, str) and have.endswith(want),
    "$in": lambda have, want: have in want,
}


def compile_filter(spec: Any, object_slug: str) -> Predicate:
    if not isinstance(spec, dict):
        raise filter_error()
    parts = [_compile_key(key, value, object_slug) for key, value in spec.items()]
    return lambda record: all(part(record) for part in parts)


def _compile_key(key: str, value: Any, object_slug: str) -> Predicate:
    if key in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise filter_error()
        subs = [compile_filter(v, object_slug) for v in value]
        if key == "$and":
            return lambda r: all(s(r) for s in subs)
        return lambda r: any(s(r) for s in subs)
    if key == "$not":
        sub = compile_filter(value, object_slug)
        return lambda r: not sub(r)
    if key == "record_id":
        return _record_id(value)
    if key == "created_at":
        return _created_at(value)
    if key not in FIELDS[object_slug]:
        raise filter_error()
    return _attribute(key, value, *FIELDS[object_slug][key])


def _record_id(value: Any) -> Predicate:
    if isinstance(value, str):
        return lambda r: r.record_id == value
    if isinstance(value, dict) and len(value) == 1:
        ((op, operand),) = value.items()
        if op == "$eq" and isinstance(operand, str):
            return lambda r: r.record_id == operand
        if op == "$in" and isinstance(operand, list) and all(isinstance(i, str) for i in operand):
            wanted = set(operand)
            return lambda r: r.record_id in wanted
    raise filter_error()


_COMPARISONS: dict[str, Callable[[datetime, datetime], bool]] = {
    "$eq": operator.eq, "$gt": operator.gt, "$gte": operator.ge,
    "$lt": operator.lt, "$lte": operator.le,
}


def _created_at(value: Any) -> Predicate:
    if not isinstance(value, dict) or not value:
        raise filter_error()
    checks: list[tuple[Callable[[datetime, datetime], bool], datetime]] = []
    for op, operand in value.items():
        moment = parse_timestamp(operand)
        if moment is None or op not in _COMPARISONS:
            raise filter_error()
        checks.append((_COMPARISONS[op], moment))
    return lambda r: all(compare(r.created_at, moment) for compare, moment in checks)


def _attribute(attribute: str, value: Any, default: str, allowed: frozenset[str]) -> Predicate:
    if isinstance(value, str):
        return _field_match(attribute, default, "$eq", value)
    if not isinstance(value, dict) or not value:
        raise filter_error()
    parts: list[Predicate] = []
    for key, operand in value.items():
        if key.startswith("$"):
            parts.append(_field_match(attribute, default, key, operand))
        elif key in allowed and isinstance(operand, str):
            parts.append(_field_match(attribute, key, "$eq", operand))
        elif key in allowed and isinstance(operand, dict) and operand:
            parts += [_field_match(attribute, key, op, arg) for op, arg in operand.items()]
        else:
            raise filter_error()
    return lambda r: all(p(r) for p in parts)


def _field_match(attribute: str, field: str, op: str, operand: Any) -> Predicate:
    if op == "$not_empty":
        if not isinstance(operand, bool):
            raise filter_error()
        return lambda r: any(v.get(field) for v in r.active(attribute)) == operand
    test = _STRING_OPS.get(op)
    valid = isinstance(operand, list) if op == "$in" else isinstance(operand, str)
    if test is None or not valid:
        raise filter_error()
    return lambda r: any(
        isinstance(v.get(field), str) and test(v[field], operand) for v in r.active(attribute)
    )


def parse_timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def sort_records(records: list[StoredRecord], sorts: Any, object_slug: str) -> list[StoredRecord]:
    """Stable order: the requested sorts, then creation order, then record id."""
    if sorts is None:
        sorts = []
    if not isinstance(sorts, list):
        raise validation_error('"sorts" must be an array.')
    ordered = sorted(records, key=lambda r: (r.created_at, r.record_id))
    for sort in reversed(sorts):
        key, descending = _sort_key(sort, object_slug)
        ordered.sort(key=key, reverse=descending)
    return ordered


def _sort_key(sort: Any, object_slug: str) -> tuple[Callable[[StoredRecord], Any], bool]:
    if not isinstance(sort, dict) or sort.get("direction") not in ("asc", "desc"):
        raise validation_error('Each sort needs "direction": "asc" or "desc".')
    if "path" in sort:
        raise validation_error("Sorting by path is not supported by this simulator.")
    attribute, field = sort.get("attribute"), sort.get("field")
    descending = sort["direction"] == "desc"
    if attribute == "created_at":
        return (lambda r: r.created_at), descending
    if attribute == "record_id":
        return (lambda r: r.record_id), descending
    fields = FIELDS[object_slug].get(attribute) if isinstance(attribute, str) else None
    if fields is None or (field is not None and field not in fields[1]):
        raise validation_error(f"Cannot sort by attribute {attribute!r} / field {field!r}.")
    name, chosen = str(attribute), str(field or fields[0])

    def key(record: StoredRecord) -> tuple[bool, str]:
        # Records without a value sort last in either direction, like Attio's nulls.
        value = record.first_active(name)
        text = value.get(chosen) if value else None
        missing = not isinstance(text, str)
        return (missing != descending, text if isinstance(text, str) else "")

    return key, descending
