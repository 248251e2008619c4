"""CRM records of any shape through `to_person` and `build_contact`.

Attio records are generated with missing, extra and wrongly typed parts at every level
(see `support.fuzz`), odd Unicode names, phones in any format and emails of any shape.
The properties:

* the adapter and the domain give a Quo contact payload, or raise `TransformError`
  with a documented category; never another exception;
* the payload is one the strict Quo simulator accepts for create and for PATCH:
  E.164 phones only, `externalId` the record id (1-75 characters), a `sourceUrl`
  that is a URL of at most 200 characters, a `firstName` that is not blank;
* a record with an id and a current first name always becomes a contact (a good
  record is never lost to an odd field elsewhere in it).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, cast

import aiohttp
import msgspec
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from support.fuzz import ANY_ATTIO_RECORD, NAMES, TEXT, UUIDS, good_attio_records

from crmsync.adapters.attio import AttioAdapter
from crmsync.adapters.base import CrmRecord, Person
from crmsync.domain.contact import MAX_EXTERNAL_ID, Transformed, TransformError, build_contact
from crmsync.sim.quo.validation import validate_contact
from crmsync.sim.quo.wire import BadRequestError

E164 = re.compile(r"\+[1-9]\d{1,14}")
#: the categories `build_contact` documents for a record that cannot be a contact
CATEGORIES = {"validation", "empty_person"}
SETTINGS = settings(max_examples=200, deadline=None)

# `to_person` reads only the record: the adapter's session is never used here.
ADAPTER = AttioAdapter(cast(aiohttp.ClientSession, None), api_key="fuzz")


def transform(record: CrmRecord) -> tuple[Person, Transformed | TransformError]:
    """The transformer's two steps; a `TransformError` is returned, anything else raised."""
    person = ADAPTER.to_person(record)
    try:
        return person, build_contact(person, "attio")
    except TransformError as error:
        return person, error


def check_payload(record: CrmRecord, result: Transformed) -> None:
    """What Quo accepts, and what crmsync promises about it."""
    contact = result.contact
    body = msgspec.json.decode(msgspec.json.encode(contact))
    for partial in (False, True):  # create, and the PATCH of a mapped contact
        try:
            validate_contact(body, partial=partial, custom_fields=())
        except BadRequestError as error:
            pytest.fail(f"Quo would answer 400 ({'PATCH' if partial else 'create'}): "
                        f"{error.errors} for {body}")
    assert contact.external_id == record.record_id
    assert 1 <= len(record.record_id) <= MAX_EXTERNAL_ID
    assert contact.source == "attio"
    fields = contact.default_fields
    assert fields.first_name is not None
    assert fields.first_name.strip(), f"blank firstName {fields.first_name!r}"
    phones = [p.value for p in fields.phone_numbers]
    assert all(p is not None and E164.fullmatch(p) for p in phones), phones
    assert len(set(phones)) == len(phones)
    emails = [e.value for e in fields.emails]
    assert all(e is not None and "@" in e and e == e.strip() for e in emails), emails
    assert len(set(emails)) == len(emails)
    for value in (fields.last_name, fields.company, fields.role):
        assert value is None or (value.strip() and value == value.strip())
    assert result.content_hash == hashlib.sha256(msgspec.json.encode(contact)).hexdigest()


def people(raw: Any, record_id: str, company: str | None) -> CrmRecord:
    return CrmRecord(crm_object="people", record_id=record_id, raw=raw,
                     related={} if company is None else {"company": company})


@SETTINGS
@given(raw=ANY_ATTIO_RECORD, record_id=st.one_of(UUIDS, st.text(max_size=90)),
       company=st.none() | NAMES)
# `values` that is not an object: to_person called .get on a list (AttributeError).
@example(raw={"values": []}, record_id="r1", company=None)
@example(raw={"values": "x", "id": 5}, record_id="r1", company=None)
# An email of only "@": its local part was the firstName, and it is empty.
@example(raw={"values": {"email_addresses": [{"email_address": "@"}]}}, record_id="r1",
         company=None)
# A web_url that is not a URL was sent as sourceUrl, which Quo refuses (400).
@example(raw={"values": {"name": [{"first_name": "Ada"}]}, "web_url": "not a url"},
         record_id="r1", company=None)
@example(raw={"values": {"name": [{"first_name": "Ada"}]}, "web_url": "http://["},
         record_id="r1", company=None)
def test_any_record_is_a_valid_contact_or_a_transform_error_with_a_category(
    raw: Any, record_id: str, company: str | None
) -> None:
    record = people(raw, record_id, company)
    person, result = transform(record)
    if isinstance(result, TransformError):
        event(f"TransformError {result.category}")
        assert result.category in CATEGORIES, result.category
        assert str(result)
        bad_id = not record_id or len(record_id) > MAX_EXTERNAL_ID
        assert (result.category == "validation") == bad_id
    else:
        event(f"contact with {min(len(result.contact.default_fields.phone_numbers), 2)}+ phones")
        check_payload(record, result)
        assert result.dropped_phones <= len(person.phones)


@SETTINGS
@given(raw=good_attio_records(), company=st.none() | NAMES)
def test_a_record_with_an_id_and_a_first_name_always_becomes_a_contact(
    raw: dict[str, Any], company: str | None
) -> None:
    record = people(raw, raw["id"]["record_id"], company)
    _, result = transform(record)
    assert isinstance(result, Transformed), result
    check_payload(record, result)
    assert result.contact.default_fields.first_name == raw["values"]["name"][0][
        "first_name"].strip()


@SETTINGS
@given(email=TEXT, phone=TEXT, country=st.none() | TEXT)
def test_a_person_of_odd_strings_is_a_valid_contact_or_a_transform_error(
    email: str, phone: str, country: str | None
) -> None:
    """The `Person` itself, straight from any adapter: emails and phones of any text."""
    raw = {"values": {
        "email_addresses": [{"email_address": email}],
        "phone_numbers": [{"original_phone_number": phone, "country_code": country}],
    }}
    record = people(raw, "r1", None)
    _, result = transform(record)
    if isinstance(result, TransformError):
        assert result.category == "empty_person"
    else:
        check_payload(record, result)
