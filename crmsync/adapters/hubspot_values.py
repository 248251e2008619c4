"""HubSpot contacts without I/O: properties read and written, persons, phones, errors.

A contact's `properties` are strings or null: `email` plus `hs_additional_emails`
(`;`-separated), `phone` and `mobilephone` as typed (national formats mean the
contact's `hs_country_region_code`, ISO alpha-2), `jobtitle` and `company` (free text,
used when no company record is associated). On a write `""` clears a property.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import phonenumbers

from crmsync.adapters.base import CrmRecord, Person, PersonChanges, PersonEmail, PersonPhone
from crmsync.adapters.errors import read_json_error

#: the properties every contact read asks for
PROPERTIES: Final = [
    "firstname", "lastname", "email", "hs_additional_emails", "phone", "mobilephone",
    "jobtitle", "company", "hs_country_region_code", "createdate", "lastmodifieddate",
]
#: crmsync's object name → HubSpot's
OBJECTS: Final = {"people": "contacts", "contacts": "contacts"}
#: `related` keys of a record besides "company": kept on the record, so `to_person`
#: does not depend on the adapter having read the account first
WEB_URL: Final = "web_url"
COMPANY: Final = "company"


def hubspot_object(crm_object: str) -> str:
    try:
        return OBJECTS[crm_object]
    except KeyError:
        raise ValueError(f"HubSpot has no {crm_object!r} object here (only people)") from None


def text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def properties_of(raw: dict[str, Any]) -> dict[str, Any]:
    props = raw.get("properties")
    return props if isinstance(props, dict) else {}


def record_id(raw: Any) -> str | None:
    """The contact's id (a string of digits on the wire; a number is taken too)."""
    ident = raw.get("id") if isinstance(raw, dict) else None
    if isinstance(ident, int) and not isinstance(ident, bool):
        return str(ident)
    return ident if isinstance(ident, str) and ident else None


def web_url(ui_domain: str, portal_id: int | str, contact_id: str) -> str:
    return f"https://{ui_domain}/contacts/{portal_id}/record/0-1/{contact_id}"


def person(record: CrmRecord) -> Person:
    props = properties_of(record.raw)
    emails: list[str] = []
    for email in [props.get("email"), *str(props.get("hs_additional_emails") or "").split(";")]:
        value = text(email)
        if value and value.lower() not in (e.lower() for e in emails):
            emails.append(value)
    region = text(props.get("hs_country_region_code"))
    phones = tuple(
        PersonPhone(label=label, raw=raw, country_code=region.upper() if region else None)
        for prop, label in (("phone", "work"), ("mobilephone", "mobile"))
        if (raw := text(props.get(prop)))
    )
    return Person(
        crm_object=record.crm_object,
        record_id=record.record_id,
        first_name=text(props.get("firstname")),
        last_name=text(props.get("lastname")),
        emails=tuple(PersonEmail(label="work" if i == 0 else "other", value=e)
                     for i, e in enumerate(emails)),
        phones=phones,
        job_title=text(props.get("jobtitle")),
        company=record.related.get(COMPANY) or text(props.get("company")),
        web_url=record.related.get(WEB_URL),
    )


def person_properties(changes: PersonChanges) -> dict[str, str]:
    """The `properties` of a contact write for `changes` ("" clears a property).

    HubSpot holds one primary email plus `hs_additional_emails`, and two phones
    (`phone`, `mobilephone`): phones past the second are not written. The company
    record is associated by the adapter; the `company` text is set to the same name.
    """
    props: dict[str, str] = {}
    if not isinstance(changes.first_name, msgspec.UnsetType):
        props["firstname"] = changes.first_name or ""
    if not isinstance(changes.last_name, msgspec.UnsetType):
        props["lastname"] = changes.last_name or ""
    if not isinstance(changes.job_title, msgspec.UnsetType):
        props["jobtitle"] = changes.job_title or ""
    if not isinstance(changes.company, msgspec.UnsetType):
        props["company"] = (changes.company or "").strip()
    if not isinstance(changes.emails, msgspec.UnsetType):
        emails = list(dict.fromkeys(e.strip() for e in changes.emails if e.strip()))
        props["email"] = emails[0] if emails else ""
        props["hs_additional_emails"] = ";".join(emails[1:])
    if not isinstance(changes.phones, msgspec.UnsetType):
        phones = list(dict.fromkeys(p.strip() for p in changes.phones if p.strip()))
        props["phone"] = phones[0] if phones else ""
        props["mobilephone"] = phones[1] if len(phones) > 1 else ""
    return props


# -- phones -----------------------------------------------------------------------------


def phone_filter_groups(e164: str) -> list[dict[str, Any]]:
    """OR'd search groups for contacts whose `phone` or `mobilephone` may be `e164`.

    HubSpot keeps phones as typed and compares them as strings, so the number is
    looked for in the forms it is usually typed in, exactly (`IN`): E.164, national
    digits with the trunk prefix (`040123456`) and without (`5558675309`), and the
    standard international and national formats (`+386 40 123 456`, `040 123 456`).
    A wildcard token (`*40123456`, the documented leading `*` of `CONTAINS_TOKEN`)
    catches compact forms with another prefix (`0038640123456`). A number typed with
    other spacing is not found. Four groups (HubSpot allows five); every hit is
    confirmed locally (`has_phone`), so a loose match costs nothing but a result.
    """
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return []
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    significant = phonenumbers.national_significant_number(parsed)
    values = list(dict.fromkeys([
        e164,
        "".join(c for c in national if c.isdigit()),
        significant,
        phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL),
        national,
    ]))
    return [
        {"filters": [{"propertyName": prop, "operator": operator, **value}]}
        for operator, value in (("IN", {"values": values}),
                                ("CONTAINS_TOKEN", {"value": "*" + significant}))
        for prop in ("phone", "mobilephone")
    ]


def has_phone(raw: dict[str, Any], e164: str) -> bool:
    """Whether the contact's `phone` or `mobilephone` is `e164` (national ones read in
    the contact's `hs_country_region_code`)."""
    props = properties_of(raw)
    region = (text(props.get("hs_country_region_code")) or "").upper() or None
    for prop in ("phone", "mobilephone"):
        typed = text(props.get(prop))
        if typed is None:
            continue
        try:
            parsed = phonenumbers.parse(typed, None if typed.startswith("+") else region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == e164:
            return True
    return False


# -- errors -----------------------------------------------------------------------------


def error_body(body: bytes) -> tuple[str, str | None]:
    """`{"status": "error", "message", "category", "policyName", ...}` → (message,
    code): the code is the rate-limit policy or the error category."""
    return read_json_error(body, "message", _error_code)


def _error_code(error: dict[str, Any]) -> str | None:
    return text(error.get("policyName")) or text(error.get("category"))
