"""Phones as crmsync should read them: E.164 via libphonenumber, national numbers in the
company's country. Used by the demo (`person_phones`), never by the API itself."""

from __future__ import annotations

import phonenumbers


def e164(typed: str, country: str) -> str | None:
    """The number in E.164, or None when it is not a valid number."""
    region = None if typed.strip().startswith("+") else country.upper()
    try:
        parsed = phonenumbers.parse(typed, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def valid_e164s(typed: list[str], country: str) -> list[str]:
    """The valid ones, in order, without repeats."""
    return list(dict.fromkeys(p for p in (e164(t, country) for t in typed) if p))
