"""`crmsync.domain.contact`: a CRM-neutral `Person` becomes a Quo `ContactInput` plus a hash.

Pure functions, no I/O: E.164 phones (from the CRM's normalised value or the national
number and its country), dropped-and-counted invalid numbers, de-duplication, the
firstName fallbacks, the INTERFACE §5 limits (externalId ≤ 75, sourceUrl ≤ 200) and a
content hash that is stable for equal input and moves with every field.
"""

from __future__ import annotations

from typing import Any

import pytest

from crmsync.adapters.base import Person, PersonEmail, PersonPhone
from crmsync.domain.contact import (
    MAX_EXTERNAL_ID,
    MAX_SOURCE_URL,
    Transformed,
    TransformError,
    build_contact,
    content_hash,
    to_e164,
)

WEB_URL = "https://app.attio.com/acme/person/rec-1"


def person(**fields: Any) -> Person:
    """A complete person; keyword arguments replace single fields."""
    base: dict[str, Any] = {
        "crm_object": "people",
        "record_id": "rec-1",
        "first_name": "Žiga",
        "last_name": "Novak",
        "full_name": "Žiga Novak",
        "emails": (PersonEmail(label="work", value="ziga.novak@acme.si"),),
        "phones": (PersonPhone(label="mobile", raw="+386 40 123 456", e164="+38640123456",
                               country_code="SI"),),
        "job_title": "CTO",
        "company": "Acme d.o.o.",
        "web_url": WEB_URL,
    }
    base.update(fields)
    return Person(**base)


def phones_of(result: Transformed) -> list[str | None]:
    return [p.value for p in result.contact.default_fields.phone_numbers]


# -- phones ----------------------------------------------------------------------------


def test_e164_is_taken_from_the_crm_normalised_value() -> None:
    phone = PersonPhone(label="mobile", raw="040 123 456", e164="+38640123456",
                        country_code="SI")
    assert to_e164(phone) == "+38640123456"
    result = build_contact(person(phones=(phone,)), "attio")
    assert phones_of(result) == ["+38640123456"]
    assert result.contact.default_fields.phone_numbers[0].name == "mobile"
    assert result.dropped_phones == 0


def test_national_format_is_parsed_with_the_country_code() -> None:
    phone = PersonPhone(label="mobile", raw="040 123 456", country_code="SI")
    result = build_contact(person(phones=(phone,)), "attio")
    assert phones_of(result) == ["+38640123456"]
    assert result.dropped_phones == 0


def test_international_format_without_e164_or_country_is_parsed() -> None:
    phone = PersonPhone(label="mobile", raw="+1 415-555-0134")
    assert to_e164(phone) == "+14155550134"


def test_invalid_crm_e164_falls_back_to_the_typed_number() -> None:
    phone = PersonPhone(label="mobile", raw="040 123 456", e164="+3861", country_code="SI")
    assert to_e164(phone) == "+38640123456"


@pytest.mark.parametrize(
    "phone",
    [
        PersonPhone(label="mobile", raw="12"),
        PersonPhone(label="mobile", raw="not a phone"),
        PersonPhone(label="mobile", raw="+1 555"),
        PersonPhone(label="mobile", raw="040 123 456"),  # national, but no country
        PersonPhone(label="mobile", raw=""),
    ],
    ids=["short", "words", "too-short-intl", "national-no-country", "empty"],
)
def test_an_unparseable_number_is_none(phone: PersonPhone) -> None:
    assert to_e164(phone) is None


def test_invalid_numbers_are_dropped_and_counted_not_fatal() -> None:
    phones = (
        PersonPhone(label="mobile", raw="12", country_code=None),
        PersonPhone(label="other", raw="+38640123456", e164="+38640123456"),
        PersonPhone(label="other", raw="call me"),
        PersonPhone(label="other", raw="ext. 42", country_code="US"),
    )
    result = build_contact(person(phones=phones), "attio")
    assert phones_of(result) == ["+38640123456"]
    assert result.dropped_phones == 3


def test_only_invalid_numbers_leave_no_phone_and_the_contact_is_still_built() -> None:
    result = build_contact(person(phones=(PersonPhone(label="mobile", raw="000"),)), "attio")
    assert phones_of(result) == []
    assert result.dropped_phones == 1
    assert result.contact.default_fields.first_name == "Žiga"


def test_the_same_number_typed_differently_is_kept_once_with_its_first_label() -> None:
    phones = (
        PersonPhone(label="mobile", raw="+38640123456", e164="+38640123456"),
        PersonPhone(label="work", raw="040 123 456", country_code="SI"),
        PersonPhone(label="home", raw="+386 40 123 456"),
        PersonPhone(label="other", raw="+1 415-555-0134"),
    )
    result = build_contact(person(phones=phones), "attio")
    assert phones_of(result) == ["+38640123456", "+14155550134"]
    assert [p.name for p in result.contact.default_fields.phone_numbers] == ["mobile", "other"]
    assert result.dropped_phones == 0  # duplicates are not failures


def test_emails_are_deduplicated_and_values_without_at_sign_dropped() -> None:
    emails = (
        PersonEmail(label="work", value=" ada@example.com "),
        PersonEmail(label="other", value="ada@example.com"),
        PersonEmail(label="other", value="not-an-email"),
        PersonEmail(label="other", value="ada@home.example"),
    )
    result = build_contact(person(emails=emails), "attio")
    assert [(e.name, e.value) for e in result.contact.default_fields.emails] == [
        ("work", "ada@example.com"),
        ("other", "ada@home.example"),
    ]


# -- names -----------------------------------------------------------------------------

NO_CONTACT: dict[str, Any] = {"emails": (), "phones": ()}
NO_NAME: dict[str, Any] = {"first_name": None, "last_name": None, "full_name": None}


@pytest.mark.parametrize(
    ("fields", "first", "last"),
    [
        ({}, "Žiga", "Novak"),
        ({"first_name": "  Ada  ", "last_name": " Lovelace "}, "Ada", "Lovelace"),
        # no first name: the full name is split
        ({"first_name": "", "last_name": "", "full_name": "Björk"}, "Björk", None),
        ({"first_name": None, "last_name": None, "full_name": "Zoë O'Brien"}, "Zoë", "O'Brien"),
        ({"first_name": "", "last_name": "", "full_name": "山田さん"}, "山田さん", None),
        ({"first_name": " ", "last_name": "Álvarez", "full_name": "José Luis Álvarez"},
         "José Luis", "Álvarez"),
        # no name at all: the email's local part, else a phone number
        ({**NO_NAME, "emails": (PersonEmail(label="work", value="ada.l@example.com"),)},
         "ada.l", None),
        ({**NO_NAME, "emails": (), "phones": (
            PersonPhone(label="mobile", raw="040 123 456", country_code="SI"),)},
         "+38640123456", None),
        # an email without "@" is no email, so the phone is next
        ({**NO_NAME, "emails": (PersonEmail(label="work", value="nobody"),), "phones": (
            PersonPhone(label="mobile", raw="+14155550134"),)},
         "+14155550134", None),
    ],
    ids=["first-name", "trimmed", "full-name-one-word", "full-name-split", "cjk-full-name",
         "full-name-minus-last", "email-local-part", "phone", "bad-email-then-phone"],
)
def test_first_name_fallbacks(fields: dict[str, Any], first: str, last: str | None) -> None:
    result = build_contact(person(**fields), "attio")
    assert result.contact.default_fields.first_name == first
    assert result.contact.default_fields.last_name == last


def test_only_a_last_name_is_not_duplicated_into_the_first_name() -> None:
    # Attio renders a person with only a last name as full_name "Novak".
    result = build_contact(
        person(first_name=None, last_name="Novak", full_name="Novak", **NO_CONTACT), "attio"
    )
    fields = result.contact.default_fields
    assert (fields.first_name, fields.last_name) == ("Novak", None)


def test_only_a_last_name_without_full_name_becomes_the_first_name() -> None:
    result = build_contact(
        person(first_name=None, last_name="Novak", full_name=None, **NO_CONTACT), "attio"
    )
    fields = result.contact.default_fields
    assert (fields.first_name, fields.last_name) == ("Novak", None)


@pytest.mark.parametrize(
    "fields",
    [
        {**NO_NAME, **NO_CONTACT},
        {"first_name": "  ", "last_name": "", "full_name": " ", **NO_CONTACT},
        # only unusable contact data: an email without "@" and a number that never parsed
        {**NO_NAME, "emails": (PersonEmail(label="work", value="n/a"),),
         "phones": (PersonPhone(label="mobile", raw="12"),)},
    ],
    ids=["nothing", "blank-strings", "unusable-email-and-phone"],
)
def test_a_person_without_name_email_or_phone_is_an_empty_person(
    fields: dict[str, Any],
) -> None:
    with pytest.raises(TransformError) as caught:
        build_contact(person(**fields), "attio")
    assert caught.value.category == "empty_person"


# -- limits ----------------------------------------------------------------------------


def test_a_record_id_of_75_characters_is_the_external_id() -> None:
    record_id = "r" * MAX_EXTERNAL_ID
    result = build_contact(person(record_id=record_id), "attio")
    assert result.contact.external_id == record_id


@pytest.mark.parametrize("record_id", ["r" * (MAX_EXTERNAL_ID + 1), ""], ids=["76", "empty"])
def test_an_unusable_record_id_is_a_validation_error(record_id: str) -> None:
    with pytest.raises(TransformError) as caught:
        build_contact(person(record_id=record_id), "attio")
    assert caught.value.category == "validation"


def test_a_source_url_over_200_characters_is_dropped_not_fatal() -> None:
    fits = "https://app.attio.com/" + "x" * (MAX_SOURCE_URL - len("https://app.attio.com/"))
    assert len(fits) == MAX_SOURCE_URL
    assert build_contact(person(web_url=fits), "attio").contact.source_url == fits
    too_long = fits + "y"
    result = build_contact(person(web_url=too_long), "attio")
    assert result.contact.source_url is None
    assert result.contact.external_id == "rec-1"


def test_the_contact_carries_source_external_id_url_company_and_role() -> None:
    result = build_contact(person(), "attio")
    contact = result.contact
    assert contact.source == "attio"
    assert contact.external_id == "rec-1"
    assert contact.source_url == WEB_URL
    assert contact.default_fields.company == "Acme d.o.o."
    assert contact.default_fields.role == "CTO"
    assert [e.value for e in contact.default_fields.emails] == ["ziga.novak@acme.si"]
    assert build_contact(person(), "pipedrive").contact.source == "pipedrive"


def test_blank_optional_fields_become_none() -> None:
    result = build_contact(person(company="  ", job_title="", web_url=" "), "attio")
    assert result.contact.default_fields.company is None
    assert result.contact.default_fields.role is None
    assert result.contact.source_url is None


# -- content hash ----------------------------------------------------------------------


def test_the_hash_is_stable_for_equal_input() -> None:
    first = build_contact(person(), "attio")
    second = build_contact(person(), "attio")
    assert first.content_hash == second.content_hash
    assert first.content_hash == content_hash(first.contact)
    assert len(first.content_hash) == 64


def test_the_hash_ignores_how_an_equal_number_was_typed() -> None:
    typed_e164 = person(phones=(PersonPhone(label="mobile", raw="+38640123456",
                                            e164="+38640123456"),))
    typed_national = person(phones=(PersonPhone(label="mobile", raw="040 123 456",
                                                country_code="SI"),))
    assert (build_contact(typed_e164, "attio").content_hash
            == build_contact(typed_national, "attio").content_hash)


@pytest.mark.parametrize(
    "change",
    [
        {"record_id": "rec-2"},
        {"first_name": "Žan"},
        {"last_name": "Horvat"},
        {"company": "Other d.o.o."},
        {"company": None},
        {"job_title": "CEO"},
        {"web_url": "https://app.attio.com/acme/person/rec-2"},
        {"emails": (PersonEmail(label="work", value="ziga@other.si"),)},
        {"emails": ()},
        {"emails": (PersonEmail(label="home", value="ziga.novak@acme.si"),)},
        {"phones": (PersonPhone(label="mobile", raw="+38641123456"),)},
        {"phones": ()},
        {"phones": (PersonPhone(label="work", raw="+38640123456"),)},
    ],
    ids=["record-id", "first-name", "last-name", "company", "no-company", "job-title",
         "url", "email", "no-email", "email-label", "phone", "no-phone", "phone-label"],
)
def test_the_hash_changes_when_any_field_changes(change: dict[str, Any]) -> None:
    before = build_contact(person(), "attio").content_hash
    assert build_contact(person(**change), "attio").content_hash != before


def test_the_hash_changes_with_the_source() -> None:
    assert (build_contact(person(), "attio").content_hash
            != build_contact(person(), "hubspot").content_hash)
