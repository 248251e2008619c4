"""End to end: `crmsync sync` (a real subprocess) from the Attio simulator into the Quo simulator.

Seeded Attio people with every odd case (unicode names, no phone, several phones,
invalid and national-format phones, shared phones, email only, full name only, value
history) must land in Quo exactly once with the fields INTERFACE §5 promises; a re-run
with nothing changed must write nothing; changed people must be PATCHed, not created;
a contact that already carries a person's externalId must be linked, not duplicated.
The Quo simulator enforces the same requests-per-second as the config: no 429 allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest
from support.e2e import (
    E2E,
    TENANT,
    active_values,
    assert_contact_matches,
    attio_record,
    e2e_env,
    e164_of,
    expected_contact,
)

from crmsync.sim.quo.testing import SimApi, contact_body

pytestmark = pytest.mark.slow

PEOPLE = 300
SEED = 20261123
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
ODD_SHAPES = (
    "email_only", "full_name_only", "no_phone", "multi_phone",
    "invalid_phone", "national_phone", "shared_phone",
)


def all_person_ids(e2e: E2E) -> list[str]:
    return [record.record_id for record in e2e.attio.people.ordered()]


def droppable_phones(e2e: E2E) -> int:
    """Current phone values with no valid E.164 form (they must be dropped and counted)."""
    return sum(
        1
        for record_id in all_person_ids(e2e)
        for value in active_values(attio_record(e2e.attio, record_id)["values"]["phone_numbers"])
        if e164_of(value) is None
    )


async def initial_sync(e2e: E2E) -> set[str]:
    """Run the first sync; the record ids that were dead-lettered (legitimately absent)."""
    result = await e2e.sync()
    assert result.code == 0, result.describe()
    dead = {d["crmRecordId"] for d in await e2e.dead_letters()}
    assert f"fetched {len(e2e.attio.people)}" in result.out, result.describe()
    return dead


async def test_initial_sync_lands_every_person_exactly_once(tmp_path: Path) -> None:
    """1. seed 300 Attio people (fixed seed) covering every odd case
    2. `crmsync sync --tenant acme` against both simulators, Quo at 200 req/s
    3. inspect the Quo simulator, `crmsync mappings` (jsonl and csv),
       `crmsync status --json` and `crmsync errors`
    Result: exit 0; every person is one Quo contact (or is listed as a dead letter);
    fields match the Attio record (E.164 phones, invalid ones dropped and counted,
    firstName never empty, company, role, sourceUrl, source, externalId); every
    mapping points at an existing contact; status counts created + failed == 300;
    the Quo limit was never exceeded and no 429 was answered.
    """
    async with e2e_env(tmp_path, people=PEOPLE, seed=SEED) as e2e:
        facts = e2e.attio.facts
        for shape in ODD_SHAPES:
            assert facts.of(shape), f"seed has no {shape} person"
        assert facts.unicode_names and facts.with_history and facts.shared_phones
        ids = all_person_ids(e2e)
        assert len(ids) == PEOPLE

        result = await e2e.sync()
        assert result.code == 0, result.describe()
        assert f"fetched {PEOPLE}" in result.out, result.describe()
        assert f"phones dropped {droppable_phones(e2e)}" in result.out, result.describe()

        # Exactly once in Quo, unless dead-lettered (and then reported by `errors`).
        dead = {d["crmRecordId"] for d in await e2e.dead_letters()}
        by_external_id = e2e.contacts_by_external_id()
        assert set(by_external_id) <= set(ids), "contacts for unknown records"
        duplicates = {k: len(v) for k, v in by_external_id.items() if len(v) != 1}
        assert not duplicates, f"duplicate contacts: {duplicates}"
        missing = set(ids) - set(by_external_id)
        assert missing == dead, f"missing but not dead-lettered: {missing - dead}"
        assert len(e2e.quo_contacts()) == PEOPLE - len(dead)
        assert len(dead) <= PEOPLE * 0.01

        # Every landed person has the right fields.
        for record_id in set(ids) - dead:
            (contact,) = by_external_id[record_id]
            assert_contact_matches(contact, expected_contact(e2e.attio, record_id))

        # The odd cases, spelled out.
        def phones_of(record_id: str) -> list[str]:
            (contact,) = by_external_id[record_id]
            return [p["value"] for p in contact["defaultFields"]["phoneNumbers"]]

        for record_id in facts.of("invalid_phone"):
            assert phones_of(record_id) == [], record_id
        for record_id in facts.of("no_phone") + facts.of("email_only"):
            assert phones_of(record_id) == [], record_id
        for record_id in facts.of("multi_phone"):
            assert len(phones_of(record_id)) >= 2, record_id
        for record_id in facts.of("national_phone"):
            (value,) = active_values(attio_record(e2e.attio, record_id)["values"]["phone_numbers"])
            assert "phone_number" not in value  # national digits + country only
            (phone,) = phones_of(record_id)
            assert phone.startswith("+") and phone == e164_of(value), record_id
        for number, owners in facts.shared_phones.items():
            assert len(owners) == 2
            for record_id in owners:
                assert phones_of(record_id) == [number], record_id
        for record_id in facts.of("email_only"):
            (contact,) = by_external_id[record_id]
            first = contact["defaultFields"]["firstName"]
            assert first and "@" not in first, record_id
        for record_id in facts.of("full_name_only") + facts.unicode_names:
            (contact,) = by_external_id[record_id]
            assert contact["defaultFields"]["firstName"], record_id

        # Mappings: one per landed person, pointing at the contact carrying its id.
        rows = await e2e.mappings("jsonl")
        assert len(rows) == PEOPLE - len(dead)
        assert {r["crmRecordId"] for r in rows} == set(ids) - dead
        contacts = e2e.quo.contacts.contacts
        for row in rows:
            assert row["tenant"] == TENANT
            assert row["crmObject"] == "people"
            assert row["entityType"] == "person"
            assert row["syncMethod"] == "initial"
            assert row["action"] == "created"
            assert row["contentHash"]
            assert RFC3339.match(row["lastSyncedAt"]), row
            mapped = contacts.get(row["quoContactId"])
            assert mapped is not None, f"mapping to a missing contact: {row}"
            assert mapped["externalId"] == row["crmRecordId"]
        csv_rows = await e2e.mappings("csv")
        as_text = [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]
        assert csv_rows == as_text

        # Status agrees.
        status = await e2e.status()
        counts = status["counts"]
        assert counts["fetched"] == PEOPLE
        assert counts["created"] + counts["failed"] == PEOPLE
        assert counts["failed"] == len(dead) == status["deadLetters"]
        assert counts["updated"] == counts["linked"] == counts["unchanged"] == 0
        assert status["lastError"] is None
        assert RFC3339.match(status["initialSyncCompletedAt"])
        assert RFC3339.match(status["lastSuccessAt"])

        posts = e2e.request_counts()[("POST", "/v1/contacts")]
        assert posts == PEOPLE - len(dead), e2e.quo.snapshot()
        e2e.assert_rate_respected()


async def test_rerun_with_nothing_changed_makes_no_quo_writes(tmp_path: Path) -> None:
    """1. initial sync of 300 people
    2. `crmsync sync` again, nothing changed in Attio
    Result: exit 0, zero POST/PATCH/DELETE on /v1/contacts*, every record counted
    unchanged (status), same contacts as before; no 429.
    """
    async with e2e_env(tmp_path, people=PEOPLE, seed=SEED) as e2e:
        dead = await initial_sync(e2e)
        before_writes = e2e.contact_writes()
        before_contacts = {c["id"]: c["updatedAt"] for c in e2e.quo_contacts()}

        result = await e2e.sync()
        assert result.code == 0, result.describe()
        assert e2e.contact_writes() == before_writes, e2e.quo.stats.by_route()
        assert {c["id"]: c["updatedAt"] for c in e2e.quo_contacts()} == before_contacts

        counts = (await e2e.status())["counts"]
        assert counts["unchanged"] == PEOPLE - len(dead)
        assert counts["created"] == counts["updated"] == counts["linked"] == 0
        e2e.assert_rate_respected()


async def test_changed_people_are_patched_not_created(tmp_path: Path) -> None:
    """1. initial sync of 300 people
    2. in Attio, change the job title of 5 people and the phone numbers of 5 others
    3. `crmsync sync`
    Result: exit 0; exactly 10 PATCH /v1/contacts/{id}, 0 POST, 0 DELETE; those
    contacts show the new values; nobody else was touched; status: 10 updated, 290
    unchanged; no 429.
    """
    async with e2e_env(tmp_path, people=PEOPLE, seed=SEED) as e2e:
        dead = await initial_sync(e2e)
        facts = e2e.attio.facts
        # Ordinary people with a phone, so both kinds of change are visible.
        candidates = [i for i in facts.of("normal") if i not in dead][:10]
        assert len(candidates) == 10
        retitled, rephoned = candidates[:5], candidates[5:]
        for n, record_id in enumerate(retitled):
            e2e.attio.update_person(record_id, notify=False, job_title=f"Chief Tester {n}")
        new_numbers = {}
        for n, record_id in enumerate(rephoned):
            new_numbers[record_id] = f"+3864012340{n}"  # SI mobile, E.164
            e2e.attio.update_person(
                record_id, notify=False, phones=[new_numbers[record_id], "+12125550199"]
            )
        before = e2e.request_counts()
        untouched = {
            c["id"]: c["updatedAt"] for c in e2e.quo_contacts()
            if c["externalId"] not in candidates
        }

        result = await e2e.sync()
        assert result.code == 0, result.describe()

        after = e2e.request_counts()
        delta = {k: after[k] - before[k] for k in after if after[k] != before[k]}
        assert delta.get(("PATCH", "/v1/contacts/{id}"), 0) == 10, delta
        assert delta.get(("POST", "/v1/contacts"), 0) == 0, delta
        assert delta.get(("POST", "/v1/contacts/bulk"), 0) == 0, delta
        assert delta.get(("DELETE", "/v1/contacts/{id}"), 0) == 0, delta

        by_external_id = e2e.contacts_by_external_id()
        for n, record_id in enumerate(retitled):
            (contact,) = by_external_id[record_id]
            assert contact["defaultFields"]["role"] == f"Chief Tester {n}"
            assert_contact_matches(contact, expected_contact(e2e.attio, record_id))
        for record_id in rephoned:
            (contact,) = by_external_id[record_id]
            phones = [p["value"] for p in contact["defaultFields"]["phoneNumbers"]]
            assert new_numbers[record_id] in phones
            assert_contact_matches(contact, expected_contact(e2e.attio, record_id))
        assert all(len(v) == 1 for v in by_external_id.values())
        assert {
            c["id"]: c["updatedAt"] for c in e2e.quo_contacts()
            if c["externalId"] not in candidates
        } == untouched

        counts = (await e2e.status())["counts"]
        assert counts["updated"] == 10
        assert counts["unchanged"] == PEOPLE - len(dead) - 10
        assert counts["created"] == counts["linked"] == 0
        rows = {r["crmRecordId"]: r for r in await e2e.mappings()}
        assert {rows[i]["action"] for i in candidates} == {"updated"}
        e2e.assert_rate_respected()


async def test_existing_contact_with_the_same_external_id_is_linked(tmp_path: Path) -> None:
    """1. seed 60 Attio people; in Quo, create a contact that already carries one
       person's record id as externalId, with different content
    2. `crmsync sync` (its create for that person gets Quo's 409)
    Result: exit 0; still one contact with that externalId, the pre-existing one,
    now holding the CRM content; its mapping says `linked`; the other 59 are
    `created`; status: 59 created, 1 linked; no 429.
    """
    people = 60
    async with e2e_env(tmp_path, people=people, seed=SEED) as e2e:
        target = e2e.attio.facts.of("normal")[0]
        async with aiohttp.ClientSession() as session:
            api = SimApi(session, e2e.quo_url, e2e.quo.api_key)
            made = await api.post("/contacts", json=contact_body(
                target, "Stale", phones=["+12125550123"], emails=["stale@example.com"],
                source="someone-else",
            ))
        assert made.status == 201, made.json
        existing_id = made.json["data"]["id"]

        result = await e2e.sync()
        assert result.code == 0, result.describe()

        by_external_id = e2e.contacts_by_external_id()
        assert all(len(v) == 1 for v in by_external_id.values()), "duplicate contacts"
        assert len(by_external_id) == people
        (contact,) = by_external_id[target]
        assert contact["id"] == existing_id
        assert_contact_matches(contact, expected_contact(e2e.attio, target))

        rows = {r["crmRecordId"]: r for r in await e2e.mappings()}
        assert len(rows) == people
        assert rows[target]["action"] == "linked"
        assert rows[target]["quoContactId"] == existing_id
        assert {r["action"] for i, r in rows.items() if i != target} == {"created"}

        counts = (await e2e.status())["counts"]
        assert (counts["created"], counts["linked"], counts["failed"]) == (people - 1, 1, 0)
        e2e.assert_rate_respected()


async def test_status_phase_is_live_once_the_initial_sync_completed(tmp_path: Path) -> None:
    """1. seed 20 Attio people
    2. `crmsync sync` (the initial sync) runs to completion
    3. `crmsync status --json`
    Result: initialSyncCompletedAt is set, so the phase is `live`, not `initial_sync`.
    """
    async with e2e_env(tmp_path, people=20, seed=SEED) as e2e:
        await initial_sync(e2e)
        status = await e2e.status()
        assert status["initialSyncCompletedAt"] is not None
        assert status["phase"] == "live", status


async def test_a_rejected_quo_key_fails_with_one_clear_line(tmp_path: Path) -> None:
    """1. seed 10 Attio people; the CLI gets a Quo API key the Quo sim does not know
    2. `crmsync sync`
    3. `crmsync status --json`
    Result: exit 1; stderr names the 401 in one line (no ExceptionGroup wording, no
    traceback); the tenant is `failed` and its lastError names the 401 too; nothing
    was written to Quo.
    """
    async with e2e_env(tmp_path, people=10, seed=SEED) as e2e:
        e2e.env["ACME_QUO_KEY"] = "not-a-quo-key"
        result = await e2e.sync()
        assert result.code == 1, result.describe()
        assert "401" in result.err, result.describe()
        assert "TaskGroup" not in result.err, result.describe()
        assert "ExceptionGroup" not in result.err, result.describe()
        status = await e2e.status()
        assert status["state"] == "failed"
        assert "401" in (status["lastError"] or ""), status
        assert not e2e.quo_contacts()
