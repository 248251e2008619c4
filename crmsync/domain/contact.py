"""CRM-neutral `Person` → Quo contact payload (INTERFACE §5), with a content hash.

Phones are normalised to E.164 with `phonenumbers`, using the record's country for
national-format numbers; numbers that cannot be parsed are dropped and counted, never
fatal. `firstName` is never empty: first name, else the full name, else the email's
local part, else a phone number. A link Quo would refuse as `sourceUrl` is left out.
"""

from __future__ import annotations

import hashlib
import re

import msgspec
import phonenumbers

from crmsync.adapters.base import Person, PersonPhone
from crmsync.quo.models import ContactInput, DefaultFields, LabeledValue

MAX_EXTERNAL_ID = 75
MAX_SOURCE_URL = 200
# Quo checks `sourceUrl` as an RFC 3986 URI: printable ASCII without spaces, a scheme and
# a host; an IPv6 host is left out rather than checked for brackets.
_HTTP_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(?::[0-9]{1,5})?(?:[/?#][!-~]*)?")


class TransformError(Exception):
    """The record cannot become a Quo contact; `category` names why (dead letters)."""

    def __init__(self, category: str, message: str) -> None:
        super().__init__(message)
        self.category = category


class Transformed(msgspec.Struct, frozen=True, kw_only=True):
    contact: ContactInput
    content_hash: str
    dropped_phones: int = 0


def to_e164(phone: PersonPhone) -> str | None:
    candidates = [c for c in (phone.e164, phone.raw) if c]
    for candidate in candidates:
        # phonenumbers wants ISO regions in upper case ("si" would drop the number).
        region = None if candidate.strip().startswith("+") else (phone.country_code or "").upper()
        try:
            parsed = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(parsed):
            return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return None


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def _names(person: Person, emails: list[str], phones: list[str]) -> tuple[str, str | None]:
    first, last = _clean(person.first_name), _clean(person.last_name)
    if first:
        return first, last
    full = _clean(person.full_name)
    if full:
        if last and full.endswith(last):
            head = full[: -len(last)].strip()
            # "Novak" with last name "Novak": the one name goes first, not twice.
            return (head, last) if head else (last, None)
        head, _, tail = full.partition(" ")
        return head, _clean(tail) or last
    if last:
        return last, None
    # An address like "@acme.si" has no local part to stand in for a name.
    local = next((part for e in emails if (part := e.split("@", 1)[0].strip())), None)
    if local:
        return local, None
    if phones:
        return phones[0], None
    raise TransformError("empty_person", "person has no name, email or phone")


def _source_url(web_url: str | None) -> str | None:
    """The record's link if Quo takes it as a `sourceUrl` (an absolute http(s) URL of at
    most 200 characters), else None: a link is not worth failing the contact over."""
    url = _clean(web_url)
    if url is None or len(url) > MAX_SOURCE_URL or not _HTTP_URL.fullmatch(url):
        return None
    return url


def content_hash(contact: ContactInput) -> str:
    # msgspec encodes Struct fields in declaration order, so equal payloads hash equally.
    return hashlib.sha256(msgspec.json.encode(contact)).hexdigest()


def build_contact(person: Person, source: str) -> Transformed:
    if not person.record_id or len(person.record_id) > MAX_EXTERNAL_ID:
        raise TransformError("validation", f"record id must be 1-{MAX_EXTERNAL_ID} characters")
    phones: list[LabeledValue] = []
    dropped = 0
    for phone in person.phones:
        e164 = to_e164(phone)
        if e164 is None:
            dropped += 1
        elif all(p.value != e164 for p in phones):
            phones.append(LabeledValue(name=phone.label, value=e164))
    emails: list[LabeledValue] = []
    for email in person.emails:
        value = email.value.strip()
        if "@" in value and all(e.value != value for e in emails):
            emails.append(LabeledValue(name=email.label, value=value))
    first, last = _names(
        person,
        [e.value for e in emails if e.value],
        [p.value for p in phones if p.value],
    )
    contact = ContactInput(
        default_fields=DefaultFields(
            first_name=first,
            last_name=last,
            company=_clean(person.company),
            role=_clean(person.job_title),
            emails=emails,
            phone_numbers=phones,
        ),
        external_id=person.record_id,
        source=source,
        source_url=_source_url(person.web_url),
    )
    return Transformed(contact=contact, content_hash=content_hash(contact), dropped_phones=dropped)
