"""The fields a Quo contact and a CRM person share, in one comparable form.

`ContactFields` holds first name, last name, company, role, emails and phones, so
normalised that two spellings of one value compare equal: text is stripped (empty is
None), emails are lower-cased, phones are E.164 (a number that does not parse is left
out), and emails and phones are sorted sets (their order and labels are not synced
back to the CRM). It is built from what crmsync writes to Quo (`from_input`) and from
the contact of a `contact.updated` / `contact.deleted` event in either envelope
(`quo_contact`: legacy `data.object` is a v1 contact with `defaultFields` and labelled
items; 2026-03-30 `data.resource` is flat, with label-less `{value, type}` items).
Snapshots of it are stored as JSON (`encode` / `decode`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from crmsync.adapters.base import PersonPhone
from crmsync.domain.contact import to_e164
from crmsync.quo.models import ContactInput

SCALARS = ("first_name", "last_name", "company", "role")
LISTS = ("emails", "phones")


class ContactFields(msgspec.Struct, frozen=True, kw_only=True):
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    role: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (self.first_name or self.last_name or self.emails or self.phones)

    def display_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or next(
            iter(self.emails or self.phones), "(no name)"
        )


class QuoContact(msgspec.Struct, frozen=True, kw_only=True):
    """The contact a `contact.*` event is about."""

    id: str
    external_id: str | None
    source: str | None
    updated_at: str | None
    fields: ContactFields


def text(value: object) -> str | None:
    return value.strip() or None if isinstance(value, str) else None


def email(value: object) -> str | None:
    cleaned = text(value)
    return cleaned.lower() if cleaned and "@" in cleaned else None


def phone(value: object) -> str | None:
    cleaned = text(value)
    return None if cleaned is None else to_e164(PersonPhone(label="", raw=cleaned))


def make(
    *,
    first_name: object = None,
    last_name: object = None,
    company: object = None,
    role: object = None,
    emails: Iterable[object] = (),
    phones: Iterable[object] = (),
) -> ContactFields:
    """Normalised fields from raw values (see the module docstring)."""
    return ContactFields(
        first_name=text(first_name),
        last_name=text(last_name),
        company=text(company),
        role=text(role),
        emails=tuple(sorted({e for v in emails if (e := email(v))})),
        phones=tuple(sorted({p for v in phones if (p := phone(v))})),
    )


def from_input(contact: ContactInput) -> ContactFields:
    """What a payload crmsync sends to Quo sets."""
    fields = contact.default_fields
    return make(
        first_name=fields.first_name, last_name=fields.last_name, company=fields.company,
        role=fields.role, emails=(e.value for e in fields.emails),
        phones=(p.value for p in fields.phone_numbers),
    )


def _values(items: object) -> list[object]:
    if not isinstance(items, list):
        return []
    return [item.get("value") for item in items if isinstance(item, dict)]


def quo_contact(resource: Mapping[str, Any]) -> QuoContact | None:
    """The event's contact, from either envelope's resource; None without an id."""
    contact_id = resource.get("id")
    if not isinstance(contact_id, str) or not contact_id:
        return None
    legacy = resource.get("defaultFields")
    source: Mapping[str, Any] = legacy if isinstance(legacy, dict) else resource
    updated_at = resource.get("updatedAt")
    return QuoContact(
        id=contact_id,
        external_id=text(resource.get("externalId")),
        source=text(resource.get("source")),
        updated_at=updated_at if isinstance(updated_at, str) else None,
        fields=make(
            first_name=source.get("firstName"), last_name=source.get("lastName"),
            company=source.get("company"), role=source.get("role"),
            emails=_values(source.get("emails")), phones=_values(source.get("phoneNumbers")),
        ),
    )


def encode(fields: ContactFields) -> str:
    return msgspec.json.encode(fields).decode()


def fingerprint(fields: ContactFields) -> str:
    """A short digest of the fields (e.g. for a write intent's payload hash)."""
    return hashlib.sha256(msgspec.json.encode(fields)).hexdigest()


def decode(stored: str) -> ContactFields | None:
    """A stored snapshot; None if it is not one (then it is as good as missing)."""
    try:
        return msgspec.json.decode(stored, type=ContactFields)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
