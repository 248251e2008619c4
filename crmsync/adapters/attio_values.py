"""`PersonChanges` → the `values` of an Attio record write (pure, no I/O).

Attio's write formats (attribute-type docs): a personal name as an object with all
three of `first_name`, `last_name` and `full_name`; emails and phone numbers as strings
(E.164 with a `+` for phones); text as a string; a record reference as
`{"target_object", "target_record_id"}`. An empty array clears an attribute. The
company is resolved to a record id by the adapter (it may have to be created first),
so it is passed in here as that id.
"""

from __future__ import annotations

from typing import Any

import msgspec

from crmsync.adapters.base import PersonChanges


def full_name(first: str | None, last: str | None) -> str:
    return " ".join(part for part in (first, last) if part)


def person_values(changes: PersonChanges, company_id: str | None) -> dict[str, Any]:
    """The `data.values` for `changes`; `company_id` is the resolved company (or None)."""
    values: dict[str, Any] = {}
    if not isinstance(changes.first_name, msgspec.UnsetType) \
            and not isinstance(changes.last_name, msgspec.UnsetType):
        first, last = changes.first_name or "", changes.last_name or ""
        values["name"] = [] if not (first or last) else [{
            "first_name": first, "last_name": last, "full_name": full_name(first, last),
        }]
    if not isinstance(changes.job_title, msgspec.UnsetType):
        values["job_title"] = [changes.job_title] if changes.job_title else []
    if not isinstance(changes.company, msgspec.UnsetType):
        values["company"] = [] if company_id is None else [
            {"target_object": "companies", "target_record_id": company_id}
        ]
    if not isinstance(changes.emails, msgspec.UnsetType):
        values["email_addresses"] = list(dict.fromkeys(changes.emails))
    if not isinstance(changes.phones, msgspec.UnsetType):
        values["phone_numbers"] = list(dict.fromkeys(changes.phones))
    return values


def replaces_lists(changes: PersonChanges) -> bool:
    """Whether the write sets a multiselect attribute (emails, phones): Attio's PATCH
    would add to the current values, PUT replaces them, which a complete list needs."""
    return not (isinstance(changes.emails, msgspec.UnsetType)
                and isinstance(changes.phones, msgspec.UnsetType))
