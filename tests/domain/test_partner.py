"""The person ⇄ partner rule (`domain/partner.py`): both directions, placeholders,
exact names, per-side hashes, update diffs and the three-way merge."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.adapters.base import Person, PersonEmail, PersonPhone
from crmsync.domain import partner as rule
from crmsync.domain.partner import Company, PartnerError, PartnerFields
from crmsync.metakocka.models import (
    BILLING,
    Partner,
    PartnerAddress,
    PartnerContact,
    PartnerInput,
)

SI = "Slovenija"


def person(
    first: str | None = "Ana",
    last: str | None = "Novak",
    *,
    company: str | None = None,
    emails: tuple[str, ...] = ("Ana.Novak@Example.si",),
    phones: tuple[str, ...] = ("+386 51 123 456",),
    country: str | None = None,
) -> Person:
    return Person(
        crm_object="people", record_id="rec-1", first_name=first, last_name=last,
        company=company, emails=tuple(PersonEmail(label="work", value=e) for e in emails),
        phones=tuple(PersonPhone(label="mobile", raw=p, country_code=country) for p in phones),
    )


def stored(partner_input: PartnerInput, mk_id: str = "228000046627") -> Partner:
    """The partner Metakocka holds after `add_partner` (as `get_partner` reads it)."""
    contact = partner_input.contact
    return Partner(
        mk_id=mk_id, customer=partner_input.customer,
        tax_id_number=partner_input.tax_id_number,
        business_entity=partner_input.business_entity,
        contacts=[] if contact is None else [msgspec.structs.replace(
            contact, mk_id=f"{mk_id}-c", mk_address_id=f"{mk_id}-a")],
        addresses=[PartnerAddress(
            mk_id=f"{mk_id}-a", address_type=BILLING, street=partner_input.street,
            post_number=partner_input.post_number, city=partner_input.city,
            country=partner_input.country,
        )],
    )


# -- CRM → Metakocka ------------------------------------------------------------------------


def test_a_person_without_a_company_is_a_private_partner_with_placeholders() -> None:
    fields = rule.partner_fields(person())
    assert fields == PartnerFields(
        customer="Ana Novak", business_entity=False, contact_name="Ana Novak",
        email="ana.novak@example.si", gsm="+38651123456",
    )
    made = rule.partner_input(fields, default_country=SI)
    assert (made.customer, made.business_entity) == ("Ana Novak", False)
    assert (made.street, made.post_number, made.city, made.country) == ("-", "-", "-", SI)
    assert made.contact == PartnerContact(
        name="Ana Novak", email="ana.novak@example.si", gsm="+38651123456"
    )


def test_a_person_at_a_company_is_a_business_partner_with_the_company_address() -> None:
    acme = Company(name=" Acme  d.o.o. ", tax_number="SI 1234 5678", street="Tehnološki park 24",
                   post_number="1000", city="Ljubljana", country="Slovenia")
    fields = rule.partner_fields(
        person(company="Acme d.o.o.", phones=("01 234 56 78", "051 123 456"), country="si"),
        acme,
    )
    assert (fields.customer, fields.business_entity) == ("Acme d.o.o.", True)
    assert (fields.contact_name, fields.gsm, fields.phone) == (
        "Ana Novak", "+38651123456", "+38612345678"
    )
    made = rule.partner_input(fields, default_country=SI)
    assert (made.street, made.post_number, made.city, made.country) == (
        "Tehnološki park 24", "1000", "Ljubljana", "Slovenia"
    )
    assert made.tax_id_number == "SI 1234 5678"


def test_the_company_name_alone_gives_a_business_partner_with_placeholders() -> None:
    fields = rule.partner_fields(person(company="Acme"))
    made = rule.partner_input(fields, default_country="Hrvatska")
    assert (made.customer, made.business_entity, made.street, made.country) == (
        "Acme", True, "-", "Hrvatska"
    )


def test_a_person_with_nothing_to_name_a_partner_after_is_refused() -> None:
    with pytest.raises(PartnerError) as caught:
        rule.partner_fields(person(None, None, emails=("not-an-email",), phones=("x",)))
    assert caught.value.category == "empty_person"


def test_a_nameless_person_is_named_after_their_email() -> None:
    fields = rule.partner_fields(person(None, None, phones=()))
    assert (fields.customer, fields.contact_name) == ("ana.novak@example.si", None)


def _texts(max_size: int) -> st.SearchStrategy[str | None]:
    return st.none() | st.text(max_size=max_size)


@settings(max_examples=300, deadline=None)
@given(
    first=_texts(300), last=_texts(300), company=_texts(300),
    emails=st.lists(st.text(max_size=300) | st.emails(), max_size=3),
    phones=st.lists(st.text(max_size=30) | st.from_regex(r"\+3865[0-9]{7}", fullmatch=True),
                    max_size=3),
    street=_texts(300), tax=_texts(100), default_country=st.text(min_size=1, max_size=50),
)
def test_any_person_gives_a_valid_partner_input(
    first: str | None, last: str | None, company: str | None, emails: list[str],
    phones: list[str], street: str | None, tax: str | None, default_country: str,
) -> None:
    crm = person(first, last, company=company, emails=tuple(emails), phones=tuple(phones))
    known = Company(name=company, tax_number=tax, street=street, post_number="1000",
                    city="Ljubljana") if company else None
    try:
        fields = rule.partner_fields(crm, known)
    except PartnerError as exc:
        assert exc.category == "empty_person"
        return
    made = rule.partner_input(fields, default_country=default_country)
    limits = rule.LIMITS
    for name in ("customer", "street", "post_number", "city", "country"):
        value = getattr(made, name)
        assert value and value == value.strip() and len(value) <= limits[name], name
    assert made.tax_id_number is None or len(made.tax_id_number) <= limits["tax_id_number"]
    assert made.business_entity == (rule.clean(company) is not None)
    if made.contact is not None:
        for name, limit in (("name", "contact_name"), ("email", "email"), ("gsm", "gsm"),
                            ("phone", "phone")):
            value = getattr(made.contact, name)
            assert value is None or 0 < len(value) <= limits[limit]
    # The hash is stable: the same person hashes the same, every time.
    assert rule.fields_hash(fields) == rule.fields_hash(rule.partner_fields(crm, known))
    assert rule.decode(rule.encode(fields)) == fields


def test_the_hash_ignores_spelling_and_sees_changes() -> None:
    one = rule.partner_fields(person())
    same = rule.partner_fields(person(" Ana ", "Novak", emails=("ana.novak@example.si",),
                                      phones=("051123456",), country="SI"))
    assert rule.fields_hash(one) == rule.fields_hash(same)
    assert len(rule.fields_hash(one)) == 64
    other = rule.partner_fields(person(phones=("+386 51 999 999",)))
    assert rule.fields_hash(one) != rule.fields_hash(other)


def test_what_crmsync_wrote_reads_back_as_the_same_fields() -> None:
    """No echo: the partner made from a person, read back, hashes like the person's side."""
    acme = Company(name="Acme d.o.o.", tax_number="SI12345678", street="Cesta 1",
                   post_number="1000", city="Ljubljana", country=SI)
    fields = rule.partner_fields(person(company="Acme d.o.o."), acme)
    partner = stored(rule.partner_input(fields, default_country=SI))
    back = rule.fields_from_partner(partner, contact_id=f"{partner.mk_id}-c", default_country=SI)
    assert back == fields
    assert rule.fields_hash(back) == rule.fields_hash(fields)


def test_metakocka_national_numbers_are_read_in_the_partner_country() -> None:
    partner = Partner(
        mk_id="1", customer="BAJEC JANEZ",
        contacts=[PartnerContact(mk_id="c", mk_address_id="a", gsm="051123456",
                                 phone="??", email=" Test@Test.si ")],
        addresses=[PartnerAddress(mk_id="a", address_type=BILLING, city="Zagreb",
                                  country="Hrvatska")],
    )
    fields = rule.fields_from_partner(partner, default_country=SI)
    assert (fields.gsm, fields.phone, fields.email) == ("+38551123456", "??", "test@test.si")
    assert rule.fields_from_partner(
        msgspec.structs.replace(partner, addresses=[]), default_country=SI
    ).gsm == "+38651123456"


# -- updates --------------------------------------------------------------------------------


def _pair() -> tuple[Partner, PartnerFields]:
    fields = rule.partner_fields(person(company="Acme"))
    return stored(rule.partner_input(fields, default_country=SI)), fields


def test_an_unchanged_person_needs_no_update() -> None:
    partner, fields = _pair()
    assert rule.partner_update(partner, fields, contact_id=f"{partner.mk_id}-c",
                               default_country=SI) is None


def test_an_update_sends_only_the_changed_fields_and_never_placeholders() -> None:
    partner, fields = _pair()
    wanted = msgspec.structs.replace(fields, email="ana@acme.si", customer="Acme d.o.o.")
    update = rule.partner_update(partner, wanted, contact_id=f"{partner.mk_id}-c",
                                 default_country=SI)
    assert update is not None and not update.adds_something
    assert update.customer == "Acme d.o.o." and update.addresses == []
    assert update.contacts == [PartnerContact(
        mk_id=f"{partner.mk_id}-c", mk_address_id=f"{partner.mk_id}-a", email="ana@acme.si"
    )]
    # A known company address replaces the placeholders; nothing is cleared.
    moved = msgspec.structs.replace(wanted, street="Cesta 2", email=None, gsm=None)
    update = rule.partner_update(partner, moved, contact_id=f"{partner.mk_id}-c",
                                 default_country=SI)
    assert update is not None
    assert update.addresses == [PartnerAddress(mk_id=f"{partner.mk_id}-a", street="Cesta 2")]
    assert all(c.email is None and c.gsm is None for c in update.contacts)


def test_a_second_person_at_the_company_is_added_as_a_contact() -> None:
    partner, _ = _pair()
    colleague = rule.partner_fields(person("Miha", "Kos", company="Acme",
                                           emails=("miha@acme.si",), phones=()))
    update = rule.partner_update(partner, colleague, contact_id=None, default_country=SI)
    assert update is not None and update.adds_something
    assert update.contacts == [PartnerContact(mk_address_id=f"{partner.mk_id}-a",
                                              name="Miha Kos", email="miha@acme.si")]


# -- Metakocka → CRM ------------------------------------------------------------------------


def test_an_imported_partner_becomes_a_person_at_its_company() -> None:
    partner = Partner(
        mk_id="1", customer="Acme d.o.o.", business_entity=True,
        contacts=[PartnerContact(mk_id="c", name="Janez Bajec", email="JB@acme.si",
                                 gsm="+386 51 123 456")],
    )
    changes = rule.new_person(rule.fields_from_partner(partner, default_country=SI))
    assert (changes.first_name, changes.last_name, changes.company) == (
        "Janez", "Bajec", "Acme d.o.o."
    )
    assert (changes.emails, changes.phones) == (("jb@acme.si",), ("+38651123456",))
    private = rule.new_person(rule.fields_from_partner(
        Partner(mk_id="2", customer="Ana Novak"), default_country=SI
    ))
    assert (private.first_name, private.last_name, private.company) == (
        "Ana", "Novak", msgspec.UNSET
    )


def test_a_metakocka_edit_changes_only_what_changed_there() -> None:
    crm = person(emails=("ana@old.si", "private@ana.si"), phones=("+38651123456",))
    base = rule.partner_fields(crm)
    assert rule.person_changes(crm, base, base).is_empty()  # our own write coming back
    edited = msgspec.structs.replace(base, email="ana@new.si", contact_name="Ana Kos")
    changes = rule.person_changes(crm, edited, base)
    assert (changes.first_name, changes.last_name) == ("Ana", "Kos")
    assert changes.emails == ("ana@new.si", "private@ana.si")
    assert changes.phones is msgspec.UNSET and changes.company is msgspec.UNSET


def test_merge_follows_the_conflict_rule_only_for_fields_changed_on_both_sides() -> None:
    base = rule.partner_fields(person())
    crm = msgspec.structs.replace(base, email="crm@x.si", contact_name="Ana Kos")
    mk = msgspec.structs.replace(base, email="mk@x.si", gsm="+38641000000", street="Cesta 1")
    merged = rule.merge(base, crm, mk, "crm_wins")
    assert merged.conflicts == ("email",)
    assert (merged.result.email, merged.result.contact_name, merged.result.gsm,
            merged.result.street) == ("crm@x.si", "Ana Kos", "+38641000000", "Cesta 1")
    assert rule.merge(base, crm, mk, "metakocka_wins").result.email == "mk@x.si"
    assert "contact_name" in rule.merge(None, crm, mk, "crm_wins").conflicts


# -- lookups --------------------------------------------------------------------------------


def test_a_name_lookup_compares_exactly() -> None:
    """`get_partner` matches names by substring: its extra hits are never the person."""
    fields = rule.partner_fields(person())
    hits = [
        Partner(mk_id="10", customer="Ana Novak Trgovina d.o.o.", business_entity=True),
        Partner(mk_id="11", customer="Ana Novak Trgovina d.o.o."),
        Partner(mk_id="12", customer="Ana Novakova"),
    ]
    assert rule.pick(hits, fields, "name", default_country=SI) is None
    hits += [Partner(mk_id="900", customer="NOVAK  ANA"), Partner(mk_id="99", customer="ana novak")]
    found = rule.pick(hits, fields, "name", default_country=SI)
    assert found is not None and found.mk_id == "99"  # the oldest exact match


def test_a_company_name_must_match_whole_and_kind_must_agree() -> None:
    fields = rule.partner_fields(person(company="Acme"))
    assert not rule.matches(Partner(mk_id="1", customer="Acme Trade", business_entity=True),
                            fields, "name", default_country=SI)
    assert not rule.matches(Partner(mk_id="1", customer="Acme"), fields, "name",
                            default_country=SI)  # a private partner is not the company
    assert rule.matches(Partner(mk_id="1", customer="ACME", business_entity=True), fields,
                        "name", default_country=SI)
    assert not rule.same_name("", "")


def test_tax_email_and_phone_lookups() -> None:
    acme = Company(name="Acme", tax_number="SI12345678")
    fields = rule.partner_fields(person(company="Acme"), acme)
    assert [by for by, _ in rule.lookup_filters(fields)] == ["tax_number", "email", "phone", "name"]
    taxed = Partner(mk_id="1", customer="Acme d.o.o.", business_entity=True,
                    tax_id_number="12345678")
    assert rule.matches(taxed, fields, "tax_number", default_country=SI)
    contact = PartnerContact(mk_id="c1", name="Someone", email="ANA.NOVAK@example.si",
                             gsm="051 123 456")
    by_contact = Partner(mk_id="2", customer="Acme", business_entity=True, contacts=[contact])
    assert rule.matches(by_contact, fields, "email", default_country=SI)
    assert rule.matches(by_contact, fields, "phone", default_country=SI)
    assert rule.contact_for(by_contact, fields, default_country=SI) == contact
    assert rule.lookup_filters(rule.partner_fields(person()))[0] == (
        "email", "ana.novak@example.si"
    )  # no tax number step for a private person
