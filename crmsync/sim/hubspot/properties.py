"""Validating property values written through the API, as HubSpot does.

A write names known, writable properties only (`PROPERTY_DOESNT_EXIST`,
`READ_ONLY_VALUE`); values are strings (numbers and booleans are taken as their
text); `""` or null clears a value. Emails must look like addresses
(`INVALID_EMAIL`), datetimes parse, `hs_country_region_code` is two letters. All
problems of one write come back together in one 400.
"""

from __future__ import annotations

import json
import re

from crmsync.sim.hubspot.errors import validation_error
from crmsync.sim.hubspot.model import JSONObject, Schema, iso, parse_time

EMAIL = re.compile(r"^[^@\s;]+@[^@\s;]+\.[^@\s;]+$")
EMAIL_PROPERTIES = frozenset({"email"})


def clean_properties(
    schema: Schema, raw: object, *, creating: bool
) -> tuple[dict[str, str | None], int | None]:
    """`(property -> value or None to clear, createdate in ms if one was given)`."""
    if not isinstance(raw, dict):
        raise validation_error('"properties" must be an object.')
    values: dict[str, str | None] = {}
    created: int | None = None
    errors: list[JSONObject] = []
    for name, value in raw.items():
        problem = _problem(schema, name, value, creating=creating)
        if problem is not None:
            errors.append(problem)
            continue
        text = _text(value)
        if name == schema.created:
            created = parse_time(text)
        elif text is None:
            values[name] = None
        elif name in schema.dates:
            values[name] = iso(parse_time(text) or 0)
        elif name == "hs_country_region_code":
            values[name] = text.upper()
        else:
            values[name] = text
    if errors:
        raise validation_error(
            "Property values were not valid: " + json.dumps(
                [{"isValid": False, "message": e["message"], "error": e["code"],
                  "name": e["context"]["propertyName"][0]} for e in errors]),
            errors=errors)
    return values, created


def _problem(schema: Schema, name: str, value: object, *, creating: bool) -> JSONObject | None:
    if not schema.known(name):
        return _error(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
    writable_created = creating and name == schema.created
    if not writable_created and (name in schema.computed or name in schema.read_only):
        return _error(name, "READ_ONLY_VALUE", f'"{name}" is a read only property; its '
                      "value cannot be set.")
    if isinstance(value, dict | list):
        return _error(name, "INVALID_OPTION", f"{value!r} is not a valid value for {name}")
    text = _text(value)
    if text is None:
        return None
    if name in EMAIL_PROPERTIES and not EMAIL.match(text):
        return _error(name, "INVALID_EMAIL", f"Email address {text} is invalid")
    if (name in schema.dates or name == schema.created) and parse_time(text) is None:
        return _error(name, "INVALID_DATE", f"{text!r} is not a valid datetime for {name}")
    if name == "hs_country_region_code" and not (len(text) == 2 and text.isalpha()):
        return _error(name, "INVALID_OPTION", f"{text!r} is not a valid country/region code")
    return None


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return text if text != "" else None


def _error(name: str, code: str, message: str) -> JSONObject:
    return {"message": message, "code": code, "context": {"propertyName": [name]}}
