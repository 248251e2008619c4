"""`ContactEditHandler`: Quo contact events → the CRM, against both simulators on
127.0.0.1 and a real SQLite state database.

Each test syncs an Attio person to Quo the daemon's way (`CrmChangeHandler`, which also
stores the contact's snapshot), edits the Quo contact as a person in the Quo app would
(the simulator's contact store, no API request), and hands the handler the event body
in the envelope of either webhook system. Requests are counted on both simulators: an
echo must cost no CRM request at all, and the CRM webhook about our own CRM write must
cost no Quo write.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest
from actors.harness import TENANT, Attio, Quo, attio_env, quo_env, state_store

from crmsync.domain.contact_merge import Conflict
from crmsync.net.ratelimit import Lane
from crmsync.services.contact_edits import (
    ContactEditHandler,
    QuoToCrm,
    deleted_marker,
)
from crmsync.services.contact_writes import QuoContactSync, RecordWriter, updated_before
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.store import Store

System = Literal["legacy", "2026-03-30"]
SYSTEMS: list[System] = ["legacy", "2026-03-30"]
WRITES = ("POST", "PATCH", "PUT", "DELETE")


@dataclass
class World:
    attio: Attio
    quo: Quo
    store: Store
    crm_changes: CrmChangeHandler
    edits: ContactEditHandler
    events: int = 0

    # -- the CRM side -------------------------------------------------------------------

    def attio_requests(self) -> int:
        return sum(self.attio.sim.stats.requests.values())

    def attio_writes(self) -> int:
        return sum(n for key, n in self.attio.sim.stats.requests.items()
                   if key.split(" ")[0] in WRITES and "/records" in key)

    async def crm_webhook(self, record_id: str, event_type: str = "record.updated") -> list[str]:
        """What the daemon does with the Attio webhook about this record."""
        body = msgspec.json.encode({"webhook_id": "wh", "events": [{
            "event_type": event_type,
            "id": {"workspace_id": "ws", "object_id": "obj", "record_id": record_id},
            "actor": {"type": "api-token", "id": "t"},
        }]})
        return await self.crm_changes.handle(self.attio.adapter.parse_webhook({}, body))

    async def sync(self, record_id: str) -> dict[str, Any]:
        """The person synced to Quo as the daemon does it; their Quo contact."""
        assert await self.crm_webhook(record_id, "record.created") == ["created"]
        return self.quo.contacts_by_external_id()[record_id]

    def person(self, record_id: str) -> Any:
        return self.attio.sim.render(self.attio.sim.person(record_id))["values"]

    def current(self, record_id: str, attribute: str, field: str) -> list[Any]:
        return [v.get(field) for v in self.person(record_id)[attribute]
                if v["active_until"] is None]

    # -- the Quo side -------------------------------------------------------------------

    def contact(self, contact_id: str) -> dict[str, Any]:
        return self.quo.sim.contacts.contacts[contact_id]

    def app_edit(self, contact_id: str, **fields: Any) -> dict[str, Any]:
        """An edit in the Quo app: `fields` are defaultFields names (emails and
        phoneNumbers as lists of values)."""
        current = self.contact(contact_id)["defaultFields"]
        body = {
            **{k: current[k] for k in ("firstName", "lastName", "company", "role")},
            "emails": [{"name": e["name"], "value": e["value"], "id": e["id"]}
                       for e in current["emails"]],
            "phoneNumbers": [{"name": p["name"], "value": p["value"], "id": p["id"]}
                             for p in current["phoneNumbers"]],
        }
        for name, value in fields.items():
            if name in ("emails", "phoneNumbers"):
                value = [{"name": "other", "value": v} for v in value]
            body[name] = value
        updated = self.quo.sim.contacts.update(contact_id, {"defaultFields": body})
        assert updated is not None
        return updated

    def app_create(self, **fields: Any) -> dict[str, Any]:
        """A contact made in the Quo app a second ago; a copy of it as it is now."""
        body = {k: v for k, v in fields.items() if k not in ("emails", "phoneNumbers")}
        body["emails"] = [{"name": "work", "value": v} for v in fields.get("emails", [])]
        body["phoneNumbers"] = [{"name": "mobile", "value": v}
                                for v in fields.get("phoneNumbers", [])]
        created = self.quo.sim.contacts.create({"defaultFields": body})
        created["source"] = None  # made in the app
        created["updatedAt"] = created["createdAt"] = (
            datetime.now(UTC) - timedelta(seconds=1)).isoformat(timespec="milliseconds")
        return copy.deepcopy(created)

    async def event(
        self, contact: dict[str, Any], system: System, event_type: str = "contact.updated"
    ) -> str:
        """Hand the handler one event about `contact` (as it is now)."""
        self.events += 1
        return await self.edits.handle(event_type, body(contact, system, event_type,
                                                        f"EV{self.events}"))


def body(contact: dict[str, Any], system: System, event_type: str, event_id: str) -> bytes:
    """A `contact.*` delivery body in either system's envelope (research §4.5)."""
    if system == "legacy":
        return msgspec.json.encode({"id": event_id, "object": "event", "apiVersion": "v4",
                                    "type": event_type, "createdAt": contact["updatedAt"],
                                    "data": {"object": {**contact, "object": "contact"}}})
    fields = contact["defaultFields"]
    resource = {
        "id": contact["id"], **{k: fields[k] for k in ("firstName", "lastName", "company",
                                                       "role")},
        "location": None, "source": contact["source"], "externalId": contact["externalId"],
        "emails": [{"value": e["value"], "type": "email"} for e in fields["emails"]],
        "phoneNumbers": [{"value": p["value"], "type": "phone-number"}
                         for p in fields["phoneNumbers"]],
        "customFields": [], "createdAt": contact["createdAt"], "updatedAt": contact["updatedAt"],
    }
    return msgspec.json.encode({
        "id": event_id, "apiVersion": "2026-03-30", "type": event_type,
        "createdAt": contact["updatedAt"],
        "data": {"resource": resource, "context": {"userId": "US1"},
                 "links": {"quo": f"https://my.quo.com/contacts/{contact['id']}"}},
    })


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path, *, mode: QuoToCrm = "update", conflict: Conflict = "crm_wins"
) -> AsyncIterator[World]:
    async with attio_env() as attio, quo_env() as quo, state_store(tmp_path) as store:
        records = RecordWriter(TENANT, store=store, sync=QuoContactSync(quo.client,
                                                                        lane=Lane.LIVE))
        crm_changes = CrmChangeHandler(TENANT, adapter=attio.adapter, store=store,
                                       quo=quo.client, records=records)
        edits = ContactEditHandler(TENANT, adapter=attio.adapter, store=store, records=records,
                                   mode=mode, conflict=conflict)
        yield World(attio, quo, store, crm_changes, edits)


def ada(w: World) -> str:
    return w.attio.sim.add_person(
        first_name="Ada", last_name="Lovelace", emails=["ada@example.com"],
        phones=["+14155552671"], job_title="CTO", notify=False,
    )


@pytest.mark.parametrize("system", SYSTEMS)
async def test_an_edit_in_quo_reaches_the_crm_and_no_echo_writes_anything(
    tmp_path: Path, system: System
) -> None:
    """1. Ada is synced to Quo (one create); the create's own `contact.updated` arrives
    2. in the Quo app her role becomes "Countess" and a second phone is added
    3. the CRM's webhook about the resulting CRM write arrives; the Quo event is replayed
    Result: the echo in 1 costs no CRM request; 2 writes the CRM person once (role and
    phones); 3 writes nothing to Quo and nothing more to the CRM."""
    async with world(tmp_path) as w:
        person = ada(w)
        contact = await w.sync(person)
        quo_writes, attio_requests = w.quo.writes(), w.attio_requests()

        assert await w.event(contact, system) == "unchanged"
        assert w.attio_requests() == attio_requests  # not even a read

        edited = w.app_edit(contact["id"], role="Countess",
                            phoneNumbers=["+14155552671", "+1 415 555 2672"])
        assert await w.event(edited, system) == "crm_updated"
        assert w.current(person, "job_title", "value") == ["Countess"]
        assert sorted(w.current(person, "phone_numbers", "phone_number")) == [
            "+14155552671", "+14155552672"]
        assert w.attio_writes() == 1

        assert await w.crm_webhook(person) == ["unchanged"]
        assert await w.crm_webhook(person) == ["unchanged"]  # one per changed attribute
        assert await w.event(edited, system) == "unchanged"
        assert w.quo.writes() == quo_writes
        assert w.attio_writes() == 1


async def test_the_daemons_own_quo_write_is_not_an_edit(tmp_path: Path) -> None:
    """A CRM change reaches Quo (one PATCH); the `contact.updated` it fires equals the
    snapshot the write stored: no CRM request."""
    async with world(tmp_path) as w:
        person = ada(w)
        contact = await w.sync(person)
        w.attio.sim.update_person(person, job_title="CEO", notify=False)
        assert await w.crm_webhook(person) == ["updated"]
        requests = w.attio_requests()
        assert await w.event(w.contact(contact["id"]), "2026-03-30") == "unchanged"
        assert w.attio_requests() == requests


@pytest.mark.parametrize(("rule", "crm_role"), [("crm_wins", "CEO"), ("quo_wins", "Countess")])
async def test_a_field_changed_on_both_sides_follows_conflict(
    tmp_path: Path, rule: Conflict, crm_role: str
) -> None:
    """1. Ada synced with role CTO
    2. in the CRM her role becomes CEO and her last name King (webhook not yet applied)
    3. in Quo her role becomes Countess and her company Engines
    Result: the company (changed in Quo only) reaches the CRM and the last name (CRM
    only) stays; the role follows `conflict`. Quo then lacks what only the CRM has, so
    one Quo PATCH makes both sides equal; the CRM webhook of step 2 and the PATCH's
    own `contact.updated` write nothing more."""
    async with world(tmp_path, conflict=rule) as w:
        person = ada(w)
        contact = await w.sync(person)
        w.attio.sim.update_person(person, job_title="CEO", last_name="King", notify=False)
        edited = w.app_edit(contact["id"], role="Countess", company="Engines")
        quo_before = w.quo.writes()

        await w.event(edited, "2026-03-30")

        assert w.current(person, "job_title", "value") == [crm_role]
        assert w.current(person, "name", "last_name") == ["King"]
        company = w.attio.adapter.to_person(
            (await w.attio.records(person))[0]).company
        assert company == "Engines"
        assert w.quo.writes() - quo_before == 1  # Quo lacked King (and CEO): one PATCH
        fields = w.contact(contact["id"])["defaultFields"]
        assert (fields["role"], fields["lastName"], fields["company"]) == (
            crm_role, "King", "Engines")
        # Everything settled: the CRM webhook and the PATCH's echo do nothing more.
        writes = w.quo.writes(), w.attio_writes()
        assert await w.crm_webhook(person) == ["unchanged"]
        assert await w.event(w.contact(contact["id"]), "legacy") == "unchanged"
        assert (w.quo.writes(), w.attio_writes()) == writes


async def test_without_a_snapshot_the_base_comes_from_the_content_hash(tmp_path: Path) -> None:
    """Mappings from before v0.7.0 (and bulk creates) have no snapshot.

    1. Ada synced; her snapshot is gone; in Quo her role becomes Countess
    Result: the CRM is unchanged since the last write (its payload hashes to the
    mapping's hash), so that payload is the base and the edit reaches the CRM.
    2. the snapshot is gone again; the CRM changes her role to CEO (not yet synced) and
    Quo, with `quo_wins`, says Pope
    Result: no base can be known, so the CRM's CEO stands (Quo's may be an old state)."""
    async with world(tmp_path, conflict="quo_wins") as w:
        person = ada(w)
        contact = await w.sync(person)
        await w.store.mappings.drop_snapshot(TENANT, "people", person)
        edited = w.app_edit(contact["id"], role="Countess")
        assert await w.event(edited, "2026-03-30") == "crm_updated"
        assert w.current(person, "job_title", "value") == ["Countess"]

        await w.store.mappings.drop_snapshot(TENANT, "people", person)
        w.attio.sim.update_person(person, job_title="CEO", notify=False)
        edited = w.app_edit(contact["id"], role="Pope")
        await w.event(edited, "2026-03-30")
        assert w.current(person, "job_title", "value") == ["CEO"]
        assert w.contact(contact["id"])["defaultFields"]["role"] == "CEO"


async def test_an_older_event_than_the_last_seen_is_stale(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        person = ada(w)
        contact = await w.sync(person)
        old = dict(w.contact(contact["id"]), updatedAt="2020-01-01T00:00:00.000Z")
        old["defaultFields"] = {**old["defaultFields"], "role": "Ancient"}
        w.attio.sim.update_person(person, job_title="CEO", notify=False)
        assert await w.crm_webhook(person) == ["updated"]  # stores Quo's updatedAt
        assert await w.event(old, "2026-03-30") == "stale"
        assert w.current(person, "job_title", "value") == ["CEO"]


async def test_an_edit_overwritten_by_a_crm_write_before_its_delivery_is_kept(
    tmp_path: Path
) -> None:
    """1. Ada synced with role CTO
    2. her role becomes Countess in the Quo app; the event is not delivered yet
    3. her last name becomes King in the CRM: the daemon PATCHes Quo with the CRM's
       payload (role CTO), overwriting the Quo edit
    4. the event of 2 arrives (older than that PATCH), then the PATCH's own event
    Result: the Quo edit is not lost: Attio gets Countess, Quo gets Countess and King;
    the late echo of 3 is stale and writes nothing."""
    async with world(tmp_path) as w:
        person = ada(w)
        contact = await w.sync(person)
        await asyncio.sleep(0.01)  # distinct updatedAt (milliseconds) for each step
        edited = copy.deepcopy(w.app_edit(contact["id"], role="Countess"))
        await asyncio.sleep(0.01)
        w.attio.sim.update_person(person, last_name="King", notify=False)
        assert await w.crm_webhook(person) == ["updated"]
        overwritten = copy.deepcopy(w.contact(contact["id"]))
        assert overwritten["defaultFields"]["role"] == "CTO"

        assert await w.event(edited, "2026-03-30") == "crm_updated"
        assert w.current(person, "job_title", "value") == ["Countess"]
        assert w.current(person, "name", "last_name") == ["King"]
        fields = w.contact(contact["id"])["defaultFields"]
        assert (fields["role"], fields["lastName"]) == ("Countess", "King")

        writes = w.quo.writes(), w.attio_writes()
        assert await w.event(overwritten, "2026-03-30") == "stale"
        assert await w.event(w.contact(contact["id"]), "legacy") == "unchanged"
        assert (w.quo.writes(), w.attio_writes()) == writes


@pytest.mark.parametrize("system", SYSTEMS)
async def test_a_deleted_contact_unlinks_and_leaves_one_note(
    tmp_path: Path, system: System
) -> None:
    async with world(tmp_path) as w:
        person = ada(w)
        contact = await w.sync(person)
        w.quo.sim.contacts.delete(contact["id"])
        assert await w.event(contact, system, "contact.deleted") == "unlinked"
        assert await w.event(contact, system, "contact.deleted") == "unlinked"  # replayed
        assert person in w.attio.sim.people  # never deleted
        notes = [n for n in w.attio.sim.notes.values() if n["parent_record_id"] == person]
        assert len(notes) == 1
        assert notes[0]["title"] == "Quo contact deleted"
        assert deleted_marker(contact["id"]) in notes[0]["content_markdown"]
        mapping = await w.store.mappings.get(TENANT, "people", person)
        assert mapping is not None and mapping.action == "unlinked"
        # A later change of the person creates the Quo contact again.
        w.attio.sim.update_person(person, job_title="CEO", notify=False)
        assert await w.crm_webhook(person) == ["created"]
        mapping = await w.store.mappings.get(TENANT, "people", person)
        assert mapping is not None and mapping.action == "created"


async def test_contacts_crmsync_deleted_are_not_unlinked(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        person = ada(w)
        contact = await w.sync(person)
        w.attio.sim.delete_person(person, notify=False)
        assert await w.crm_webhook(person, "record.deleted") == ["deleted"]
        assert await w.event(contact, "2026-03-30", "contact.deleted") == "ignored: not mapped"


@pytest.mark.parametrize("system", SYSTEMS)
async def test_a_contact_made_in_quo_becomes_a_crm_person_with_update_and_create(
    tmp_path: Path, system: System
) -> None:
    """1. a contact is made in the Quo app (no externalId)
    2. its `contact.updated` arrives
    Result: one CRM person with its fields; the mapping says linked; the Quo contact
    now carries the person's id as externalId and `attio` as source (one PATCH). The
    PATCH's echo and the CRM's `record.created` write nothing more; a replay of 2
    creates no second person."""
    async with world(tmp_path, mode="update_and_create") as w:
        made = w.app_create(firstName="Grace", lastName="Hopper", company="Navy",
                            emails=["Grace@Navy.example"], phoneNumbers=["+14155552699"])
        people = len(w.attio.sim.people)
        assert await w.event(made, system) == "crm_created"
        assert len(w.attio.sim.people) == people + 1
        contact = w.contact(made["id"])
        person = contact["externalId"]
        assert contact["source"] == "attio"
        assert w.current(person, "name", "full_name") == ["Grace Hopper"]
        assert w.current(person, "email_addresses", "email_address") == ["grace@navy.example"]
        assert w.current(person, "phone_numbers", "phone_number") == ["+14155552699"]
        mapping = await w.store.mappings.get(TENANT, "people", person)
        assert mapping is not None
        assert (mapping.action, mapping.quo_contact_id, mapping.sync_method) == (
            "linked", made["id"], "webhook")

        writes = w.quo.writes(), w.attio_writes()
        assert await w.event(contact, system) == "unchanged"
        assert await w.crm_webhook(person, "record.created") == ["unchanged"]
        assert await w.event(made, system) == "stale"  # the pre-link event, replayed late
        assert (w.quo.writes(), w.attio_writes()) == writes
        assert len(w.attio.sim.people) == people + 1


async def test_unmatched_contacts_are_left_alone_unless_update_and_create(
    tmp_path: Path
) -> None:
    async with world(tmp_path, mode="update") as w:
        made = w.app_create(firstName="Grace", phoneNumbers=["+14155552699"])
        assert await w.event(made, "2026-03-30") == "ignored: not synced (quo_to_crm = update)"
        assert w.attio_requests() == 0 and len(w.attio.sim.people) == 0


async def test_a_quo_contact_with_the_number_of_a_synced_person_creates_nobody(
    tmp_path: Path
) -> None:
    async with world(tmp_path, mode="update_and_create") as w:
        person = ada(w)
        await w.sync(person)
        made = w.app_create(firstName="Ada (mobile)", phoneNumbers=["+14155552671"])
        assert await w.event(made, "2026-03-30") == "ignored: the CRM already has this person"
        assert len(w.attio.sim.people) == 1


async def test_off_ignores_contact_events(tmp_path: Path) -> None:
    async with world(tmp_path, mode="off") as w:
        person = ada(w)
        contact = await w.sync(person)
        edited = w.app_edit(contact["id"], role="Countess")
        requests = w.attio_requests()
        assert await w.event(edited, "2026-03-30") == "ignored: quo_to_crm is off"
        assert await w.event(edited, "legacy", "contact.deleted") == "ignored: quo_to_crm is off"
        assert w.attio_requests() == requests


async def test_a_write_the_crm_refuses_is_dead_lettered_not_retried(tmp_path: Path) -> None:
    """An email another CRM person has: Attio answers 409; the event ends `rejected`
    with a `crm_rejected` dead letter, and the CRM person is unchanged."""
    async with world(tmp_path) as w:
        person = ada(w)
        w.attio.sim.add_person(first_name="Bob", emails=["bob@example.com"], notify=False)
        contact = await w.sync(person)
        edited = w.app_edit(contact["id"], emails=["bob@example.com"])
        outcome = await w.event(edited, "2026-03-30")
        assert outcome.startswith("rejected: ")
        assert w.current(person, "email_addresses", "email_address") == ["ada@example.com"]
        assert await w.store.dead_letters.counts_by_category(TENANT) == {"crm_rejected": 1}


def test_timestamps_compare_as_instants() -> None:
    later = (datetime(2026, 4, 13, tzinfo=UTC) + timedelta(seconds=1)).isoformat()
    assert updated_before("2026-04-13T12:00:00.000Z", "2026-04-13T12:00:00.001Z")
    assert not updated_before("2026-04-13T12:00:00Z", "2026-04-13T12:00:00.000Z")
    assert not updated_before(None, later) and not updated_before(later, None)
