"""Turning test-friendly person arguments into Attio attribute payloads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crmsync.sim.attio import model, phones
from crmsync.sim.attio.model import JSONObject, StoredRecord

PhoneInput = str | Mapping[str, object]
CHANGEABLE = frozenset({
    "first_name", "last_name", "full_name", "emails", "phones", "job_title", "company_id",
})


def name_payloads(
    first_name: str | None, last_name: str | None, full_name: str | None
) -> list[JSONObject]:
    """No parts at all -> no name value; `full_name` defaults to "first last"."""
    if first_name is None and last_name is None and full_name is None:
        return []
    first, last = first_name or "", last_name or ""
    full = full_name if full_name is not None else " ".join(p for p in (first, last) if p)
    return [model.personal_name(first, last, full)]


def email_payloads(emails: Iterable[str]) -> list[JSONObject]:
    return [model.email_address(e) for e in emails]


def phone_payloads(numbers: Iterable[PhoneInput]) -> list[JSONObject]:
    return [phones.value_from_input(n) for n in numbers]


def text_payloads(value: str | None) -> list[JSONObject]:
    return [] if value is None else [model.text(value)]


def company_payloads(company_id: str | None) -> list[JSONObject]:
    return [] if company_id is None else [model.reference("companies", company_id)]


def change_payloads(
    record: StoredRecord, changes: Mapping[str, Any]
) -> dict[str, list[JSONObject]]:
    """Attribute -> new active payloads for the attributes `changes` touches."""
    unknown = set(changes) - CHANGEABLE
    if unknown:
        raise TypeError(f"unknown person fields: {', '.join(sorted(unknown))}")
    result: dict[str, list[JSONObject]] = {}
    if changes.keys() & {"first_name", "last_name", "full_name"}:
        current = record.first_active("name") or {}
        first = changes.get("first_name", current.get("first_name"))
        last = changes.get("last_name", current.get("last_name"))
        full = changes.get("full_name") if "full_name" in changes else None
        result["name"] = name_payloads(first, last, full)
    if "emails" in changes:
        result["email_addresses"] = email_payloads(changes["emails"] or ())
    if "phones" in changes:
        result["phone_numbers"] = phone_payloads(changes["phones"] or ())
    if "job_title" in changes:
        result["job_title"] = text_payloads(changes["job_title"])
    if "company_id" in changes:
        result["company"] = company_payloads(changes["company_id"])
    return result


def current_phones(record: StoredRecord) -> list[str]:
    """The person's current E.164 numbers (what a correct client would sync)."""
    return [
        str(v["phone_number"]) for v in record.active("phone_numbers")
        if isinstance(v.get("phone_number"), str)
    ]
