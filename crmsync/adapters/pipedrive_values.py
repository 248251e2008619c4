"""Pipedrive values without I/O: listing cursors, persons, write bodies, phones, times.

Cursors are crmsync's own strings, stored in the checkpoint table, so a listing resumes
after a restart: `a|<pipedrive cursor>` pages the full listing (newest first), and
`c|<RFC 3339 instant>|<pipedrive cursor>` the persons updated at or after the instant
(oldest change first). An empty Pipedrive cursor is the first page. Pipedrive's cursors
are base64 text, and the instant has no `|`, so the split is unambiguous.

Persons (v2): `emails` and `phones` are lists of `{"value", "primary", "label"}`, phones
as the user typed them (national formats mean the company's country, which the adapter
passes on as each phone's `country_code`); `org_id` is a plain integer.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final, NamedTuple

import msgspec
import phonenumbers

from crmsync.adapters.base import CrmRecord, Person, PersonChanges, PersonEmail, PersonPhone
from crmsync.adapters.errors import read_json_error

FULL: Final = "a"
CHANGED: Final = "c"

#: `related` keys of a `CrmRecord` besides "company": what `to_person` needs from the
#: account, kept on the record so the person does not depend on the adapter's state
REGION: Final = "region"
WEB_URL: Final = "web_url"


class Listing(NamedTuple):
    """A decoded cursor: which listing (`since` None: the full one) and where in it."""

    since: str | None
    cursor: str | None


def encode_cursor(listing: Listing) -> str:
    tail = listing.cursor or ""
    if listing.since is None:
        return f"{FULL}|{tail}"
    return f"{CHANGED}|{listing.since}|{tail}"


def decode_cursor(cursor: str | None) -> Listing:
    """`cursor` as `fetch_page` gets it; a string this adapter never made is a
    ValueError (a checkpoint from another CRM adapter, a hand-edited database)."""
    if cursor is None:
        return Listing(None, None)
    kind, _, rest = cursor.partition("|")
    if kind == FULL and cursor.startswith(f"{FULL}|"):
        return Listing(None, rest or None)
    if kind == CHANGED and rest.count("|") >= 1:
        since, _, tail = rest.partition("|")
        if since:
            return Listing(since, tail or None)
    raise ValueError(f"not a Pipedrive listing cursor: {cursor[:40]!r}")


def rfc3339(epoch: float) -> str:
    """Whole seconds, rounded down: a filter that starts early only repeats records."""
    instant = dt.datetime.fromtimestamp(int(epoch // 1), tz=dt.UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def v1_time(rfc: str | None) -> str | None:
    """RFC 3339 → v1's `YYYY-MM-DD HH:MM:SS` (UTC); None when absent or unreadable."""
    if not rfc:
        return None
    try:
        instant = dt.datetime.fromisoformat(rfc.strip())
    except ValueError:
        return None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=dt.UTC)
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


# -- reading persons --------------------------------------------------------------------


def int_id(value: Any) -> int | None:
    """Pipedrive ids are integers (bool is an int to Python, never an id)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def person_id(raw: dict[str, Any]) -> str | None:
    ident = int_id(raw.get("id"))
    return None if ident is None else str(ident)


def org_id(raw: dict[str, Any]) -> int | None:
    return int_id(raw.get("org_id"))


def text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def region(country: Any) -> str | None:
    """An ISO 3166 alpha-2 code phonenumbers knows, upper case; else None."""
    code = text(country)
    code = code.upper() if code else None
    return code if code in phonenumbers.SUPPORTED_REGIONS else None


def _entries(values: Any) -> list[dict[str, Any]]:
    """The `{"value", "primary", "label"}` entries with a value, the primary one first."""
    entries = [v for v in values if isinstance(v, dict) and text(v.get("value"))] \
        if isinstance(values, list) else []
    return sorted(entries, key=lambda v: v.get("primary") is not True)  # stable


def person(record: CrmRecord) -> Person:
    raw = record.raw
    country = record.related.get(REGION)
    emails = tuple(
        PersonEmail(label=text(e.get("label")) or "other", value=str(text(e.get("value"))))
        for e in _entries(raw.get("emails"))
    )
    phones = tuple(
        PersonPhone(label=text(p.get("label")) or "other", raw=str(text(p.get("value"))),
                    country_code=country)
        for p in _entries(raw.get("phones"))
    )
    return Person(
        crm_object=record.crm_object,
        record_id=record.record_id,
        first_name=text(raw.get("first_name")),
        last_name=text(raw.get("last_name")),
        full_name=text(raw.get("name")),
        emails=emails,
        phones=phones,
        job_title=text(raw.get("job_title")),
        company=record.related.get("company"),
        web_url=record.related.get(WEB_URL),
    )


def web_url(company_domain: str | None, record_id: str) -> str:
    host = f"{company_domain}.pipedrive.com" if company_domain else "app.pipedrive.com"
    return f"https://{host}/person/{record_id}"


# -- writing persons --------------------------------------------------------------------


def _listed(values: tuple[str, ...], first_label: str) -> list[dict[str, Any]]:
    unique = [v for v in dict.fromkeys(v.strip() for v in values) if v]
    return [
        {"value": v, "primary": i == 0, "label": first_label if i == 0 else "other"}
        for i, v in enumerate(unique)
    ]


def person_body(changes: PersonChanges, org: int | None, *, create: bool) -> dict[str, Any]:
    """The v2 body for `changes`; `org` is the resolved organization of `changes.company`.

    Pipedrive cannot hold a person without a name: a write that clears both names leaves
    the name as it is, and a create without one names the person after the first email
    or phone (as Pipedrive's own UI does for such contacts).
    """
    body: dict[str, Any] = {}
    if isinstance(changes.first_name, str | None) and isinstance(changes.last_name, str | None):
        first, last = (changes.first_name or "").strip(), (changes.last_name or "").strip()
        if first or last:
            body["name"] = " ".join(part for part in (first, last) if part)
            body["first_name"] = first or None
            body["last_name"] = last or None
    if not isinstance(changes.job_title, msgspec.UnsetType):
        body["job_title"] = (changes.job_title or "").strip() or None
    if not isinstance(changes.company, msgspec.UnsetType):
        body["org_id"] = org
    if not isinstance(changes.emails, msgspec.UnsetType):
        body["emails"] = _listed(changes.emails, "work")
    if not isinstance(changes.phones, msgspec.UnsetType):
        body["phones"] = _listed(changes.phones, "mobile")
    if create and "name" not in body:
        fallback = [e["value"] for e in body.get("emails", []) + body.get("phones", [])]
        if fallback:
            body["name"] = fallback[0]
    return body


# -- phones -----------------------------------------------------------------------------


def search_terms(e164: str) -> list[str]:
    """Digit strings a person's stored phone may equal when it is `e164`: the E.164
    digits (typed internationally), the national form with its trunk prefix (`0` in
    most of Europe) and the national significant number (how US numbers are typed).

    How Pipedrive's search compares formatted phones is not documented: these are
    searched with `exact_match`, and every hit is confirmed locally (`same_number`).
    """
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return []
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    terms = [
        e164.lstrip("+"),
        "".join(c for c in national if c.isdigit()),
        phonenumbers.national_significant_number(parsed),
    ]
    return [t for t in dict.fromkeys(terms) if len(t) >= 2]


def same_number(typed: str, e164: str, country: str | None) -> bool:
    """Whether a phone as typed in Pipedrive is `e164` (national ones in `country`)."""
    try:
        parsed = phonenumbers.parse(typed, None if typed.strip().startswith("+") else country)
    except phonenumbers.NumberParseException:
        return False
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == e164


# -- errors -----------------------------------------------------------------------------


def error_body(body: bytes) -> tuple[str, str | None]:
    """`{"success": false, "error", "error_info", "errorCode"}` → (message, code)."""
    return read_json_error(body, "error", _error_code)


def _error_code(error: dict[str, Any]) -> str | None:
    code = error.get("errorCode")
    return None if code is None else str(code)
