"""One end-to-end suite for every CRM crmsync speaks (`support.crm_drivers.DRIVERS`).

Each test runs the real CLI or daemon (`crmsync sync`, `crmsync run`) against the Quo
simulator and the CRM's own strict simulator, and checks what lands on both sides with
values computed from the simulators' records, never through the product's adapters:

- the initial sync puts every person in Quo exactly once with INTERFACE §5's fields,
  newest records first, and a full re-sync makes zero Quo writes;
- a change made in the CRM while nothing listens is picked up by the next sync;
- the CRM's webhooks drive create, update and delete; a forged one is refused (401);
- an SMS and a call become one note each on the person, even when delivered twice;
- an edit made to the contact in the Quo app reaches the CRM person;
- a sync killed mid-way resumes without a duplicate contact.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from support.crm_drivers import DRIVERS
from support.crm_world import TENANT, CrmWorld, crm_world
from support.e2e import assert_contact_matches
from support.live import Daemon, wait_until

from crmsync.adapters.registry import ADAPTERS

pytestmark = pytest.mark.slow

CRMS = sorted(DRIVERS)
PEOPLE = 30
#: the initial sync pages this many people per page: 10 % of them, so the first page is
#: the newest 10 %. With Quo's limit at the same number, the first second's requests are
#: exactly that page's creates (they fly concurrently, so a higher limit would let the
#: next page's race them), and the next page waits for the next second.
PAGE = PEOPLE // 10


def assert_every_person_once(world: CrmWorld) -> None:
    contacts = world.contacts_by_external_id()
    people = world.crm.record_ids()
    assert sorted(contacts) == sorted(people), "Quo contacts != CRM people"
    for record_id in people:
        (contact,) = contacts[record_id]
        assert_contact_matches(contact, world.crm.expected_contact(record_id), world.crm.name)


@pytest.mark.parametrize("crm", CRMS)
async def test_initial_sync_is_once_newest_first_and_a_resync_writes_nothing(
    tmp_path: Path, crm: str,
) -> None:
    async with crm_world(tmp_path, crm, people=PEOPLE, page_size=PAGE, rps=PAGE) as world:
        await world.sync()

        assert_every_person_once(world)
        newest = set(world.crm.newest_first()[:PAGE])
        assert set(world.creation_order()[:PAGE]) == newest
        world.assert_quo_rate_respected()
        assert world.crm.rate_limited() == 0

        writes = world.contact_writes()
        await world.sync("--full")
        assert world.contact_writes() == writes  # everything unchanged


@pytest.mark.parametrize("crm", CRMS)
async def test_a_change_made_while_nobody_listened_is_picked_up_by_the_next_sync(
    tmp_path: Path, crm: str,
) -> None:
    """No daemon runs, so the CRM's webhook reaches nobody: the next `crmsync sync`
    (from the watermark where the CRM can list changes, else a full scan) updates that
    one contact and writes nothing else. From a watermark it reads one short page, not
    the CRM's 10 pages."""
    async with crm_world(tmp_path, crm, people=PEOPLE, page_size=PAGE) as world:
        await world.sync()
        full_scan = world.crm.requests_made()
        person = world.crm.record_ids()[PEOPLE // 2]
        world.crm.update_job_title(person, "Chief Listener")
        writes = world.contact_writes()

        await world.sync()

        contact = world.contact_of(person)
        assert contact is not None and contact["defaultFields"]["role"] == "Chief Listener"
        assert world.contact_writes() == writes + 1
        second = world.crm.requests_made() - full_scan
        if world.crm.lists_changes:
            assert second <= full_scan / 3, (second, full_scan)


async def until_contact(daemon: Daemon, world: CrmWorld, record_id: str, *,
                        role: str | None = None, gone: bool = False,
                        within: float = 30) -> None:
    def reached() -> bool:
        contact = world.contact_of(record_id)
        if gone:
            return contact is None
        return contact is not None and (role is None or contact["defaultFields"]["role"] == role)

    await daemon.wait_for(reached, within=within, message=f"contact of {record_id}")


@pytest.mark.parametrize("crm", CRMS)
async def test_crm_webhooks_create_update_delete_and_a_forged_one_is_refused(
    tmp_path: Path, crm: str,
) -> None:
    async with crm_world(tmp_path, crm, people=10) as world, world.daemon() as daemon:
        assert (await daemon.tenant_status())["crmChanges"] == "webhooks"
        record_id = world.crm.add_person(
            first_name="Grace", last_name="Hopper", emails=["grace@navy.example"],
            phones=["+14155552671"], job_title="Rear Admiral")
        await until_contact(daemon, world, record_id, role="Rear Admiral")
        contact = world.contact_of(record_id)
        assert contact is not None
        assert_contact_matches(contact, world.crm.expected_contact(record_id), world.crm.name)

        writes = world.contact_writes()
        world.crm.update_job_title(record_id, "Commodore")
        await until_contact(daemon, world, record_id, role="Commodore")
        world.crm.delete_person(record_id)
        await until_contact(daemon, world, record_id, gone=True)
        assert world.contact_writes() == writes + 2  # one PATCH, one DELETE

        headers, body = world.crm.forged_webhook(world.crm_webhook_url)
        assert await daemon.post(f"/webhooks/{TENANT}/crm", body, headers) == 401
        assert daemon.running


@pytest.mark.parametrize("crm", CRMS)
async def test_without_webhooks_status_says_polling_only_and_polling_catches_changes(
    tmp_path: Path, crm: str,
) -> None:
    """A CRM whose webhooks are set up by hand (HubSpot) without `crm_webhook_secret`,
    any other without `http.public_url`: no webhook can be verified, `crmsync status`
    says "polling only" and why, and a change in the CRM still reaches Quo by the next
    polls (every 5 s: the first after start scans in full, the next from the watermark)."""
    hand_made = world_has_hand_made_webhooks(crm)
    async with (
        crm_world(tmp_path, crm, people=10, poll_interval=5, webhook_secret=False,
                  public_url=hand_made) as world,
        world.daemon() as daemon,
    ):
        status = (await world.cli("status", "--json")).out
        reason = "crm_webhook_secret is not set" if hand_made else "http.public_url is not set"
        assert f'"crmChanges":"polling only: {reason}' in status, status
        person = world.crm.record_ids()[2]
        world.crm.update_job_title(person, "Found By Polling")
        await until_contact(daemon, world, person, role="Found By Polling", within=40)


def world_has_hand_made_webhooks(crm: str) -> bool:
    """Whether the CRM's webhooks are set up by hand (its adapter cannot create them)."""
    return not ADAPTERS[crm].webhooks_by_api  # type: ignore[attr-defined]


def unique_phone(world: CrmWorld) -> tuple[str, str]:
    """A person and a phone number of theirs that nobody else has."""
    owners: dict[str, set[str]] = {}
    for record_id in world.crm.record_ids():
        for phone in world.crm.person(record_id).phones:
            owners.setdefault(phone, set()).add(record_id)
    return next((ids.pop(), phone) for phone, ids in sorted(owners.items()) if len(ids) == 1)


@pytest.mark.parametrize("crm", CRMS)
async def test_an_sms_and_a_call_are_one_note_each_even_when_delivered_twice(
    tmp_path: Path, crm: str,
) -> None:
    async with crm_world(tmp_path, crm, people=PEOPLE) as world, world.daemon() as daemon:
        person, phone = unique_phone(world)
        sms = await world.quo.sms(phone, "Is my order on its way?")
        call = await world.quo.call_completed(phone, duration=95)
        for publication in (sms, call):
            assert publication.deliveries, publication
            for delivery in publication.deliveries:  # Quo's manual retry: same webhook-id
                assert await world.quo.hooks.attempt(delivery, "manual")

        def two_notes() -> bool:
            return len(world.crm.notes_of(person)) >= 2

        await daemon.wait_for(two_notes, within=30, message="two notes")
        await asyncio.sleep(0)  # let a (wrong) third note show if the duplicate made one
        notes = world.crm.notes_of(person)
        assert len(notes) == 2, notes
        assert sum("Is my order on its way?" in note for note in notes) == 1, notes


@pytest.mark.parametrize("crm", CRMS)
async def test_an_edit_in_the_quo_app_reaches_the_crm_person(tmp_path: Path, crm: str) -> None:
    async with crm_world(tmp_path, crm, people=10) as world, world.daemon() as daemon:
        person = world.crm.record_ids()[3]
        contact = world.contact_of(person)
        assert contact is not None
        writes = world.contact_writes()

        publication = await world.quo.edit_contact_in_app(contact["id"], role="Countess")
        assert publication.ok, publication

        await daemon.wait_for(lambda: world.crm.person(person).job_title == "Countess",
                              within=30, message="the CRM person's job title")
        assert world.contact_writes() == writes  # no echo back to Quo


@pytest.mark.parametrize("crm", CRMS)
async def test_a_sync_killed_mid_way_resumes_without_a_duplicate(
    tmp_path: Path, crm: str,
) -> None:
    """1. `crmsync sync` at 10 Quo requests a second, SIGKILLed once a third of the
       people are in Quo
    2. `crmsync sync` again.
    Result: every person in Quo exactly once, as the CRM holds them."""
    async with crm_world(tmp_path, crm, people=PEOPLE, rps=10, page_size=PAGE) as world:
        process = await world.spawn_sync()
        try:
            await wait_until(lambda: len(world.contacts_by_external_id()) >= PEOPLE // 3,
                             within=60, message="a third synced")
        finally:
            process.send_signal(signal.SIGKILL)
            await process.wait()
        assert len(world.contacts_by_external_id()) < PEOPLE

        await world.sync()

        assert_every_person_once(world)
        world.assert_quo_rate_respected()
