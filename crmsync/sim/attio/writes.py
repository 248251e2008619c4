"""Validating the `values` of record writes (create, PATCH, PUT) the way Attio does.

`parse_values` turns a write body's `data.values` into stored payloads per attribute,
or raises Attio's errors: an unknown attribute slug or id is 400 `value_not_found`; a
read-only one (`created_at`, `created_by`) 400 `immutable_value`; a value of the wrong
shape, several values for a single-value attribute, an email that is not one, a phone
number that is not valid E.164 (or `{original_phone_number, country_code}` that does
not parse), or a name object without all three parts is 400 `validation_type`; a
reference to a company that does not exist is 400 `value_not_found`; an email address
another person already has (people's `email_addresses` is unique in Attio) and a
company domain another company has are 409 `uniqueness_conflict` (values the record
already holds are not checked again). The message texts
of the last three follow Attio's style; only the codes are documented. An array
replaces (or, for a PATCH of a multiselect attribute, adds to) the values; `[]`
clears the attribute.
"""

from __future__ import annotations

import re
from typing import Any

import phonenumbers

from crmsync.sim.attio import model
from crmsync.sim.attio.errors import AttioError, validation_error
from crmsync.sim.attio.model import ATTRIBUTE_TYPES, JSONObject, StoredRecord
from crmsync.sim.attio.store import RecordStore

READ_ONLY = frozenset({"created_at", "created_by"})
MULTISELECT = frozenset({"email_addresses", "phone_numbers", "domains"})
#: (object, attribute) → the payload field that must be unique among the object's records
UNIQUE = {("people", "email_addresses"): "email_address", ("companies", "domains"): "domain"}
REFERENCE_TARGETS = {("people", "company"): "companies"}
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

Stores = dict[str, RecordStore]


def value_not_found(message: str) -> AttioError:
    return AttioError(400, "invalid_request_error", "value_not_found", message)


def write_values(body: JSONObject) -> Any:
    """`body["data"]["values"]`; anything else in the body is a validation error."""
    if set(body) != {"data"} or not isinstance(body["data"], dict):
        raise validation_error('Body payload validation error: expected exactly "data".')
    data = body["data"]
    if set(data) != {"values"}:
        raise validation_error('Body payload validation error: "data" takes only "values".')
    return data["values"]


def parse_values(
    stores: Stores, slug: str, values: Any, *, record_id: str | None, slug_of: dict[str, str]
) -> dict[str, list[JSONObject]]:
    """Attribute slug → the payloads to store; `slug_of` maps attribute ids to slugs."""
    if not isinstance(values, dict):
        raise validation_error('Body payload validation error: "values" must be an object.')
    parsed: dict[str, list[JSONObject]] = {}
    for key, given in values.items():
        attribute: str = slug_of.get(str(key), str(key))
        kind = ATTRIBUTE_TYPES[slug].get(attribute)
        if kind is None:
            raise value_not_found(f'Cannot find attribute with slug/ID "{key}".')
        if attribute in READ_ONLY:
            raise AttioError(400, "invalid_request_error", "immutable_value",
                             f'Cannot write to the read-only attribute "{attribute}".')
        items = given if isinstance(given, list) else [given]
        if len(items) > 1 and attribute not in MULTISELECT:
            raise validation_error(
                f'Attribute "{attribute}" accepts one value, {len(items)} were given.'
            )
        payloads: list[JSONObject] = []
        for item in items:
            payload = _payload(stores, slug, attribute, kind, item)
            if payload not in payloads:
                payloads.append(payload)
        _check_unique(stores[slug], slug, attribute, payloads, record_id)
        parsed[attribute] = payloads
    return parsed


def _invalid(attribute: str, item: Any) -> AttioError:
    return validation_error(
        f'Invalid value was passed to attribute with slug "{attribute}": {item!r}.'
    )


def _payload(stores: Stores, slug: str, attribute: str, kind: str, item: Any) -> JSONObject:
    if kind == "personal-name":
        return _name(attribute, item)
    if kind == "email-address":
        email = item.get("email_address") if isinstance(item, dict) and set(item) == {
            "email_address"} else item
        if not isinstance(email, str) or not _EMAIL.fullmatch(email.strip()):
            raise _invalid(attribute, item)
        return model.email_address(email.strip())
    if kind == "phone-number":
        return _phone(attribute, item)
    if kind == "text":
        text = item.get("value") if isinstance(item, dict) and set(item) == {"value"} else item
        if not isinstance(text, str):
            raise _invalid(attribute, item)
        return model.text(text)
    if kind == "domain":
        domain = item.get("domain") if isinstance(item, dict) and set(item) == {"domain"} \
            else item
        if not isinstance(domain, str) or "." not in domain:
            raise _invalid(attribute, item)
        return model.domain(domain.strip().lower())
    if kind == "record-reference":
        return _reference(stores, slug, attribute, item)
    raise _invalid(attribute, item)


def _name(attribute: str, item: Any) -> JSONObject:
    parts = ("first_name", "last_name", "full_name")
    if isinstance(item, str):
        # "Last name(s), First name(s)"; without a comma it is all first name.
        last, comma, first = item.partition(",")
        first, last = (first.strip(), last.strip()) if comma else (item.strip(), "")
        return model.personal_name(first, last, " ".join(p for p in (first, last) if p))
    if not isinstance(item, dict) or set(item) != set(parts) or not all(
        isinstance(item[p], str) for p in parts
    ):
        raise validation_error(
            f'Attribute "{attribute}" takes a string or an object with first_name, '
            "last_name and full_name (all three must be set)."
        )
    return model.personal_name(item["first_name"], item["last_name"], item["full_name"])


def _phone(attribute: str, item: Any) -> JSONObject:
    if isinstance(item, str):
        original, region = item.strip(), None
        if not original.startswith("+"):
            raise _invalid(attribute, item)
    elif isinstance(item, dict) and set(item) <= {"original_phone_number", "country_code"} \
            and isinstance(item.get("original_phone_number"), str) \
            and isinstance(item.get("country_code"), str | None):
        original, region = item["original_phone_number"], item.get("country_code")
    else:
        raise _invalid(attribute, item)
    try:
        parsed = phonenumbers.parse(original, region)
    except phonenumbers.NumberParseException:
        raise _invalid(attribute, item) from None
    if not phonenumbers.is_valid_number(parsed):
        raise _invalid(attribute, item)
    return {
        "original_phone_number": original,
        "country_code": phonenumbers.region_code_for_number(parsed),
        "phone_number": phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
    }


def _reference(stores: Stores, slug: str, attribute: str, item: Any) -> JSONObject:
    target = REFERENCE_TARGETS.get((slug, attribute))
    if (
        target is None or not isinstance(item, dict)
        or set(item) != {"target_object", "target_record_id"}
        or item["target_object"] != target or not isinstance(item["target_record_id"], str)
    ):
        raise _invalid(attribute, item)
    if item["target_record_id"] not in stores[target]:
        raise value_not_found(
            f'Record with ID "{item["target_record_id"]}" not found in object "{target}".'
        )
    return model.reference(target, item["target_record_id"])


def _check_unique(
    store: RecordStore, slug: str, attribute: str, payloads: list[JSONObject],
    record_id: str | None,
) -> None:
    field = UNIQUE.get((slug, attribute))
    if field is None:
        return
    current = store.get(record_id) if record_id is not None else None
    held = {v.get(field) for v in current.active(attribute)} if current is not None else set()
    for payload in payloads:
        value = payload[field]
        if value in held:
            continue  # kept, not added: only new values are checked
        if any(
            other.record_id != record_id and any(v.get(field) == value
                                                 for v in other.active(attribute))
            for other in _holders(store, attribute, value)
        ):
            raise AttioError(
                409, "invalid_request_error", "uniqueness_conflict",
                f'The value "{value}" provided for attribute with slug "{attribute}" is '
                "not unique: another record already has it.",
            )


def _holders(store: RecordStore, attribute: str, value: str) -> list[StoredRecord]:
    if attribute == "email_addresses":
        return store.lookup(attribute, value)  # indexed
    return list(store)
