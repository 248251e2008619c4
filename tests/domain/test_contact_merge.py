"""The three-way merge of a Quo contact edit, and the fields it compares.

The table is INTERFACE §7's rule, one row per case and per `conflict`; hypothesis then
checks the rule's properties over any base, Quo and CRM values (a side that did not
change never wins over one that did; both sides agreeing is the answer; the rules are
mirror images; lists never conflict when the base is known).
"""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.adapters.base import PersonChanges
from crmsync.domain import contact_fields
from crmsync.domain.contact_fields import ContactFields, make, quo_contact
from crmsync.domain.contact_merge import Conflict, merge, new_person, person_changes
from crmsync.quo.models import ContactInput, DefaultFields, LabeledValue

BASE = ContactFields(first_name="Ada", last_name="Lovelace", company="Engines", role="CTO",
                     emails=("ada@x.com",), phones=("+14155552671",))


def edit(fields: ContactFields, **changes: object) -> ContactFields:
    return msgspec.structs.replace(fields, **changes)


# (Quo's company, the CRM's company) against BASE's "Engines" → the merged company.
MERGE_TABLE = [
    # neither side changed
    ("Engines", "Engines", "crm_wins", "Engines", False),
    ("Engines", "Engines", "quo_wins", "Engines", False),
    # changed only in Quo: written to the CRM whatever the rule
    ("Babbage & Co", "Engines", "crm_wins", "Babbage & Co", False),
    ("Babbage & Co", "Engines", "quo_wins", "Babbage & Co", False),
    # changed only in the CRM: the CRM's value stands (the CRM → Quo path carries it)
    ("Engines", "Difference Ltd", "crm_wins", "Difference Ltd", False),
    ("Engines", "Difference Ltd", "quo_wins", "Difference Ltd", False),
    # changed on both sides to the same value: no conflict
    ("Babbage & Co", "Babbage & Co", "crm_wins", "Babbage & Co", False),
    # changed on both sides differently: the rule decides
    ("Babbage & Co", "Difference Ltd", "crm_wins", "Difference Ltd", True),
    ("Babbage & Co", "Difference Ltd", "quo_wins", "Babbage & Co", True),
    # a clear on one side is a change like any other
    (None, "Engines", "crm_wins", None, False),
    ("Engines", None, "quo_wins", None, False),
    (None, "Difference Ltd", "crm_wins", "Difference Ltd", True),
    (None, "Difference Ltd", "quo_wins", None, True),
]


@pytest.mark.parametrize(("quo", "crm", "rule", "merged", "conflict"), MERGE_TABLE)
def test_the_merge_table(
    quo: str | None, crm: str | None, rule: Conflict, merged: str | None, conflict: bool
) -> None:
    result = merge(BASE, edit(BASE, company=quo), edit(BASE, company=crm), rule)
    assert result.result == edit(BASE, company=merged)
    assert result.conflicts == (("company",) if conflict else ())


def test_fields_merge_independently() -> None:
    """Quo changes the role, the CRM the last name, both the first name: each field on
    its own; only the first name is a conflict."""
    quo = edit(BASE, role="Countess", first_name="Augusta")
    crm = edit(BASE, last_name="King", first_name="A.")
    result = merge(BASE, quo, crm, "crm_wins")
    assert result.result == edit(BASE, role="Countess", last_name="King", first_name="A.")
    assert result.conflicts == ("first_name",)


def test_emails_and_phones_merge_per_item_and_never_conflict() -> None:
    """Quo replaces the phone and adds an email; the CRM adds another phone and removes
    the email: every add and remove of either side is kept."""
    quo = edit(BASE, phones=("+14155552672",), emails=("ada@x.com", "ada@y.com"))
    crm = edit(BASE, phones=("+14155552671", "+14155552673"), emails=())
    for rule in ("crm_wins", "quo_wins"):
        result = merge(BASE, quo, crm, rule)  # type: ignore[arg-type]
        assert result.result.phones == ("+14155552672", "+14155552673")
        assert result.result.emails == ("ada@y.com",)
        assert result.conflicts == ()


def test_without_a_base_every_difference_is_a_conflict() -> None:
    quo = edit(BASE, role="Countess", phones=("+14155552672",))
    result = merge(None, quo, BASE, "crm_wins")
    assert result.result == BASE
    assert result.conflicts == ("role", "phones")
    assert merge(None, quo, BASE, "quo_wins").result == quo
    assert merge(None, BASE, BASE, "crm_wins").conflicts == ()


texts = st.one_of(st.none(), st.sampled_from(["Ada", "Bea", "Cy"]))


def items(values: list[str]) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(values), unique=True).map(lambda got: tuple(sorted(got)))


fields_st = st.builds(
    ContactFields, first_name=texts, last_name=texts, company=texts, role=texts,
    emails=items(["a@x.com", "b@x.com", "c@x.com"]),
    phones=items(["+14155552671", "+14155552672", "+38640123456"]),
)
rules = st.sampled_from(["crm_wins", "quo_wins"])


@settings(max_examples=300, deadline=None)
@given(base=fields_st, quo=fields_st, crm=fields_st, rule=rules)
def test_merge_properties(
    base: ContactFields, quo: ContactFields, crm: ContactFields, rule: Conflict
) -> None:
    merged = merge(base, quo, crm, rule)
    if quo == base:  # nothing changed in Quo: the CRM stands (no CRM write follows)
        assert merged.result == crm and merged.conflicts == ()
    if crm == base:  # nothing changed in the CRM: Quo's edit is taken whole
        assert merged.result == quo and merged.conflicts == ()
    assert merge(base, quo, quo, rule).result == quo
    # The rules are mirror images: swapping the sides swaps the winner.
    other: Conflict = "quo_wins" if rule == "crm_wins" else "crm_wins"
    assert merge(base, crm, quo, other).result == merged.result
    for name in ("first_name", "last_name", "company", "role"):
        value = getattr(merged.result, name)
        assert value in (getattr(quo, name), getattr(crm, name))
        if name in merged.conflicts:
            winner = crm if rule == "crm_wins" else quo
            assert value == getattr(winner, name)
    assert "emails" not in merged.conflicts and "phones" not in merged.conflicts
    assert set(merged.result.emails) <= {*quo.emails, *crm.emails}


@settings(max_examples=200, deadline=None)
@given(base=fields_st, quo=fields_st, crm=fields_st, rule=rules)
def test_writing_the_result_to_the_crm_converges(
    base: ContactFields, quo: ContactFields, crm: ContactFields, rule: Conflict
) -> None:
    """Applying `person_changes` to the CRM gives the merge result, and merging again
    against that result (the snapshot) with Quo unchanged writes nothing more."""
    merged = merge(base, quo, crm, rule).result
    changes = person_changes(crm, merged, emails_order=crm.emails, phones_order=crm.phones)
    after = _apply(crm, changes)
    assert after == merged
    assert person_changes(after, merge(merged, merged, after, rule).result).is_empty()


def _apply(crm: ContactFields, changes: PersonChanges) -> ContactFields:
    def pick(value: object, current: object) -> object:
        return current if value is msgspec.UNSET else value

    return make(
        first_name=pick(changes.first_name, crm.first_name),
        last_name=pick(changes.last_name, crm.last_name),
        company=pick(changes.company, crm.company),
        role=pick(changes.job_title, crm.role),
        emails=pick(changes.emails, crm.emails),  # type: ignore[arg-type]
        phones=pick(changes.phones, crm.phones),  # type: ignore[arg-type]
    )


def test_person_changes_touch_only_what_differs_and_keep_the_crm_order() -> None:
    crm = edit(BASE, emails=("ada@x.com", "lady@x.com"))
    result = edit(crm, role="Countess", emails=("ada@x.com", "ada@z.com", "lady@x.com"))
    changes = person_changes(crm, result, emails_order=["lady@x.com", "ada@x.com"])
    assert changes == PersonChanges(
        job_title="Countess", emails=("lady@x.com", "ada@x.com", "ada@z.com"),
    )
    named = person_changes(crm, edit(crm, last_name=None))
    assert named == PersonChanges(first_name="Ada", last_name=None)
    assert new_person(make(first_name="Bo", phones=["+14155552671"])) == PersonChanges(
        first_name="Bo", last_name=None, phones=("+14155552671",),
    )


# -- the fields of both envelopes and of crmsync's own payload ---------------------------

NEW_RESOURCE = {
    "id": "CT1", "firstName": " Ada ", "lastName": "Lovelace", "company": None, "role": "",
    "location": None, "source": "attio", "externalId": "rec-1",
    "emails": [{"value": "Ada@X.com", "type": "email"}, {"value": "not-an-email", "type": "email"}],
    "phoneNumbers": [{"value": "+1 (415) 555-2671", "type": "phone-number"},
                     {"value": "12", "type": "phone-number"}],
    "customFields": [], "createdAt": "2026-04-13T12:00:00.000Z",
    "updatedAt": "2026-04-13T12:00:01.000Z",
}
LEGACY_OBJECT = {
    "object": "contact", "id": "CT1", "externalId": "rec-1", "source": "attio",
    "defaultFields": {
        "firstName": "Ada", "lastName": "Lovelace", "company": None, "role": None,
        "emails": [{"id": "e1", "name": "work", "value": "ada@x.com"}],
        "phoneNumbers": [{"id": "p1", "name": "mobile", "value": "+14155552671"}],
    },
    "updatedAt": "2026-04-13T12:00:01.000Z",
}
EXPECTED = ContactFields(first_name="Ada", last_name="Lovelace", emails=("ada@x.com",),
                         phones=("+14155552671",))


@pytest.mark.parametrize("resource", [NEW_RESOURCE, LEGACY_OBJECT], ids=["2026-03-30", "legacy"])
def test_both_envelopes_give_the_same_normalised_fields(resource: dict[str, object]) -> None:
    contact = quo_contact(resource)
    assert contact is not None
    assert (contact.id, contact.external_id, contact.source) == ("CT1", "rec-1", "attio")
    assert contact.updated_at == "2026-04-13T12:00:01.000Z"
    assert contact.fields == EXPECTED
    assert quo_contact({"firstName": "no id"}) is None


def test_our_payload_reads_as_the_same_fields_and_snapshots_round_trip() -> None:
    payload = ContactInput(
        default_fields=DefaultFields(
            first_name="Ada", last_name="Lovelace",
            emails=[LabeledValue(name="work", value="ada@x.com")],
            phone_numbers=[LabeledValue(name="mobile", value="+14155552671")],
        ),
        external_id="rec-1", source="attio",
    )
    assert contact_fields.from_input(payload) == EXPECTED
    assert contact_fields.decode(contact_fields.encode(EXPECTED)) == EXPECTED
    assert contact_fields.decode("not json") is None
