"""The HubSpot adapter against the simulator: reads by id, phones, notes, person writes
(with the company association) and the app's webhooks as the simulator delivers them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from adapters.test_hubspot import Env, hubspot_env
from support.adapter_http import Receiver, receiver

from crmsync.adapters.base import CrmChange, NoteInput, PersonChanges, WebhookSignatureError
from crmsync.adapters.errors import CrmApiError, CrmConflictError, CrmNotFoundError
from crmsync.sim.hubspot import HubSpotSim
from crmsync.sim.quo.testing import wait_until

CONTACTS = "/crm/v3/objects/contacts"


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with hubspot_env(60) as env:
        yield env


def live(sim: HubSpotSim, ids: list[str]) -> list[str]:
    return [i for i in ids if not sim.contact(i).archived]


def company_links(sim: HubSpotSim, record_id: str) -> list[str]:
    return [str(i) for i in sim.contact(record_id).linked("companies")]


# -- reads by id -----------------------------------------------------------------------


async def test_fetch_by_ids_returns_those_that_exist_from_a_207(env: Env) -> None:
    wanted = env.sim.record_ids()[:5]
    gone = env.sim.record_ids()[5]
    env.sim.delete_contact(gone, notify=False)
    records = await env.adapter.fetch_by_ids("people", [*wanted, gone, "999999"])
    assert sorted(r.record_id for r in records) == sorted(wanted)
    assert env.sim.stats.count("POST", f"{CONTACTS}/batch/read", 207) == 1
    assert await env.adapter.fetch_by_ids("people", []) == []


async def test_fetch_by_ids_reads_150_ids_in_two_batches() -> None:
    async with hubspot_env(160) as env:
        wanted = env.sim.record_ids()[:150]
        records = await env.adapter.fetch_by_ids("people", wanted)
        assert sorted(r.record_id for r in records) == sorted(wanted)
        assert env.sim.stats.count("POST", f"{CONTACTS}/batch/read") == 2


async def test_fetch_one_is_none_once_deleted_or_merged_away(env: Env) -> None:
    first, second, third = env.sim.record_ids()[:3]
    assert await env.adapter.fetch_one("people", first) is not None
    env.sim.delete_contact(first, notify=False)
    assert await env.adapter.fetch_one("people", first) is None
    env.sim.merge_contacts(second, third, notify=False)
    assert await env.adapter.fetch_one("people", third) is None  # answered by `second`
    assert (await env.adapter.fetch_one("people", second)) is not None
    assert [r.record_id for r in await env.adapter.fetch_by_ids("people", [third])] == []


# -- phones ----------------------------------------------------------------------------


async def test_phones_come_as_typed_with_labels_and_the_region(env: Env) -> None:
    national = live(env.sim, env.sim.facts.of("national_with_region"))[0]
    two = live(env.sim, env.sim.facts.of("two_phones"))[0]
    records = {r.record_id: r for r in await env.adapter.fetch_by_ids(
        "people", [national, two])}
    (phone,) = env.adapter.to_person(records[national]).phones
    props = env.sim.contact(national).properties
    assert (phone.label, phone.raw) == ("work", props["phone"])
    assert phone.country_code == props["hs_country_region_code"]
    work, mobile = env.adapter.to_person(records[two]).phones
    assert (work.label, mobile.label) == ("work", "mobile")
    assert mobile.raw == env.sim.contact(two).properties["mobilephone"]


async def test_find_people_by_phone_in_each_typed_form(env: Env) -> None:
    """Contacts whose phone is typed in E.164, in the international format, or
    nationally with a region are found by their E.164 number; others are not."""
    checked = 0
    for shape in ("normal", "national_with_region", "mobile_only", "two_phones"):
        for record_id in live(env.sim, env.sim.facts.of(shape))[:3]:
            for e164 in env.sim.person_phones(record_id):
                found = await env.adapter.find_people_by_phone(e164)
                assert record_id in found, (shape, e164,
                                            env.sim.contact(record_id).properties)
                checked += 1
    assert checked >= 8
    assert await env.adapter.find_people_by_phone("+38649999999") == []


async def test_a_national_number_without_a_region_is_not_claimed(env: Env) -> None:
    record_id = env.sim.add_contact(phone="040 123 456", notify=False)
    assert record_id not in await env.adapter.find_people_by_phone("+38640123456")
    env.sim.update_contact(record_id, hs_country_region_code="SI", notify=False)
    assert record_id in await env.adapter.find_people_by_phone("+38640123456")


# -- notes -----------------------------------------------------------------------------


async def test_a_note_is_written_found_by_its_marker_and_deleted(env: Env) -> None:
    person = env.sim.record_ids()[0]
    note_id = await env.adapter.write_note(NoteInput(
        crm_object="people", person_id=person, title="Call: inbound (42s)",
        markdown="**Summary** <b>x</b>\n\n- asked for a quote\n\nquo:AC12",
        created_at="2024-05-01T10:00:00Z",
    ))
    other = await env.adapter.write_note(NoteInput(
        crm_object="people", person_id=person, title="SMS", markdown="hi\n\nquo:AC1"))
    (stored, _) = env.sim.notes_of(person)
    assert stored["id"] == note_id
    body = stored["properties"]["hs_note_body"]
    assert body.startswith("<p><b>Call: inbound (42s)</b></p>")
    assert "&lt;b&gt;x&lt;/b&gt;" in body and "<li>asked for a quote</li>" in body
    assert stored["properties"]["hs_timestamp"].startswith("2024-05-01T10:00:00")
    assert await env.adapter.find_note_ids("people", person, "quo:AC12") == [note_id]
    assert await env.adapter.find_note_ids("people", person, "quo:AC1") == [other]
    assert await env.adapter.find_note_ids("people", person, "quo:AC9") == []
    await env.adapter.delete_note(note_id)
    assert [n["id"] for n in env.sim.notes_of(person)] == [other]
    await env.adapter.delete_note(note_id)  # already gone: not an error


async def test_a_5xx_on_a_note_write_is_not_retried(env: Env) -> None:
    """It may have been written: the activity logger retries through its marker."""
    env.sim.faults.fail_next = 1
    with pytest.raises(CrmApiError):
        await env.adapter.write_note(NoteInput(
            crm_object="people", person_id=env.sim.record_ids()[0], title="SMS",
            markdown="hello"))
    assert env.sim.stats.count("POST", "/crm/v3/objects/notes") == 1


# -- person writes ---------------------------------------------------------------------


async def test_update_person_sets_properties_and_makes_the_company_the_only_one(
    env: Env,
) -> None:
    """1. a contact with two companies 2. update names, emails, phones and company
    "Brand New Ltd" 3. update again to an existing company 4. clear the company.
    Result: the company is created once and becomes the only association, the text
    property follows; the answer is the record as `fetch_one` reads it."""
    record_id = live(env.sim, env.sim.facts.two_companies)[0]
    record = await env.adapter.update_person("people", record_id, PersonChanges(
        first_name="Ada", last_name="Lovelace", job_title="CTO", company="Brand New Ltd",
        emails=("ada@brand.example", "ada@home.example"),
        phones=("+38640123456", "+15558675309", "+38641000000"),
    ))
    props = env.sim.contact(record_id).properties
    assert (props["firstname"], props["lastname"], props["jobtitle"]) == ("Ada", "Lovelace",
                                                                          "CTO")
    assert (props["email"], props["hs_additional_emails"]) == ("ada@brand.example",
                                                               "ada@home.example")
    assert (props["phone"], props["mobilephone"]) == ("+38640123456", "+15558675309")
    assert props["company"] == "Brand New Ltd"
    (company,) = company_links(env.sim, record_id)
    created = env.sim.companies.get(int(company))
    assert created is not None and created.properties["name"] == "Brand New Ltd"
    person = env.adapter.to_person(record)
    assert person.company == "Brand New Ltd" and person.job_title == "CTO"
    assert [p.raw for p in person.phones] == ["+38640123456", "+15558675309"]

    companies = len(env.sim.companies)
    existing = next(c for c in env.sim.companies if str(c.id) != company)
    record = await env.adapter.update_person("people", record_id, PersonChanges(
        company=existing.properties["name"]))
    assert company_links(env.sim, record_id) == [str(existing.id)]
    assert len(env.sim.companies) == companies  # found, not created
    assert env.adapter.to_person(record).company == existing.properties["name"]

    record = await env.adapter.update_person("people", record_id, PersonChanges(
        company=None, job_title=None, phones=()))
    assert company_links(env.sim, record_id) == []
    props = env.sim.contact(record_id).properties
    assert "company" not in props and "jobtitle" not in props and "phone" not in props
    assert env.adapter.to_person(record).company is None


async def test_a_company_created_a_moment_ago_is_not_created_twice() -> None:
    """Search lags writes: two contacts given the same new company within the lag
    share the one company the adapter created (it remembers it)."""
    async with hubspot_env(10, search_lag=30.0) as env:
        first, second = env.sim.record_ids()[:2]
        await env.adapter.update_person("people", first, PersonChanges(company="Fresh Co"))
        await env.adapter.update_person("people", second, PersonChanges(company="Fresh Co"))
        assert company_links(env.sim, first) == company_links(env.sim, second)
        assert sum(c.properties.get("name") == "Fresh Co" for c in env.sim.companies) == 1


async def test_update_person_of_a_deleted_contact_is_not_found(env: Env) -> None:
    record_id = env.sim.record_ids()[0]
    env.sim.delete_contact(record_id, notify=False)
    with pytest.raises(CrmNotFoundError):
        await env.adapter.update_person("people", record_id, PersonChanges(job_title="X"))


async def test_create_person_with_its_company_in_one_request(env: Env) -> None:
    existing = next(iter(env.sim.companies))
    name = existing.properties["name"]
    record = await env.adapter.create_person("people", PersonChanges(
        first_name="Grace", last_name="Hopper", emails=("grace@navy.example",),
        phones=("+15558675309",), company=name, job_title="Admiral"))
    contact = env.sim.contact(record.record_id)
    assert contact.properties["email"] == "grace@navy.example"
    assert company_links(env.sim, record.record_id) == [str(existing.id)]
    assert contact.primary_company == existing.id
    person = env.adapter.to_person(record)
    assert (person.first_name, person.company, person.job_title) == ("Grace", name, "Admiral")
    assert person.web_url == env.sim.web_url(record.record_id)
    assert env.sim.stats.count("POST", CONTACTS) == 1


async def test_create_person_with_a_taken_email_is_a_conflict_sent_once(env: Env) -> None:
    taken = env.sim.contact(env.sim.record_ids()[0]).properties["email"]
    with pytest.raises(CrmConflictError, match="Existing ID"):
        await env.adapter.create_person("people", PersonChanges(emails=(taken,)))
    assert env.sim.stats.count("POST", CONTACTS) == 1


# -- webhooks --------------------------------------------------------------------------


async def delivered(rec: Receiver, count: int) -> None:
    await wait_until(lambda: len(rec.received) >= count, message=f"{count} deliveries")


async def test_ensure_webhook_makes_no_request(env: Env) -> None:
    assert await env.adapter.ensure_webhook("https://sync.example.com/x") == (
        "hubspot-app", None)
    assert env.sim.stats.total_requests == 0
    assert env.adapter.webhooks_by_api is False and env.adapter.changes_lag == 300.0


async def test_a_delivery_verifies_with_the_app_secret_and_parses(env: Env) -> None:
    """1. the app's target is a local receiver 2. a contact is created, one edited,
    one deleted, in the app 3. verify each delivery with the app secret and its URL.
    Result: genuine deliveries pass; another secret, URL or a tampered body do not;
    the events parse into created, updated and deleted changes."""
    secret = env.sim.config.app_secret
    async with receiver() as rec:
        env.sim.point_webhooks(rec.url)
        added = env.sim.add_contact(firstname="Ada", email="ada@hooks.example")
        await delivered(rec, 1)
        edited = env.sim.record_ids()[0]
        env.sim.update_contact(edited, jobtitle="CTO")
        env.sim.delete_contact(env.sim.record_ids()[1])
        await env.sim.hooks.drain()
    changes: list[CrmChange] = []
    for headers, body in rec.received:
        env.adapter.verify_webhook(headers, body, secret, method="POST", url=rec.url)
        changes += env.adapter.parse_webhook(headers, body).changes
        for wrong in ({"secret": "nope"}, {"url": rec.url + "/x"}):
            with pytest.raises(WebhookSignatureError):
                env.adapter.verify_webhook(headers, body, wrong.get("secret", secret),
                                           method="POST", url=wrong.get("url", rec.url))
        with pytest.raises(WebhookSignatureError):
            env.adapter.verify_webhook(headers, body + b" ", secret, method="POST",
                                       url=rec.url)
    kinds = {(c.record_id, c.kind) for c in changes}
    assert (added, "created") in kinds and (edited, "updated") in kinds
    assert any(kind == "deleted" for _, kind in kinds)


@pytest.mark.parametrize("skew_ms", [-301_000, 301_000], ids=["stale", "future"])
async def test_a_delivery_outside_five_minutes_is_refused(env: Env, skew_ms: int) -> None:
    async with receiver() as rec:
        env.sim.point_webhooks(rec.url)
        env.sim.hooks.timestamp_skew_ms = skew_ms
        env.sim.add_contact(firstname="Late")
        await delivered(rec, 1)
    headers, body = rec.received[0]
    with pytest.raises(WebhookSignatureError, match="5 minutes"):
        env.adapter.verify_webhook(headers, body, env.sim.config.app_secret, method="POST",
                                   url=rec.url)


async def test_a_retried_delivery_has_the_same_event_id(env: Env) -> None:
    """HubSpot resends the same events (attemptNumber + 1, a new timestamp) after a
    500: both attempts verify and give one event id, so the inbox keeps one."""
    async with receiver(answers=[500]) as rec:
        env.sim.point_webhooks(rec.url)
        env.sim.add_contact(firstname="Twice")
        await delivered(rec, 2)
    (h1, b1), (h2, b2) = rec.received[:2]
    assert b1 != b2  # attemptNumber differs
    for headers, body in ((h1, b1), (h2, b2)):
        env.adapter.verify_webhook(headers, body, env.sim.config.app_secret, method="POST",
                                   url=rec.url)
    assert env.adapter.parse_webhook(h1, b1).event_id == \
        env.adapter.parse_webhook(h2, b2).event_id
    assert [e["attemptNumber"] for e in msgspec.json.decode(b2)] == [1] * len(
        msgspec.json.decode(b2))


async def test_a_merge_event_names_the_survivor_and_the_merged_contact(env: Env) -> None:
    async with receiver() as rec:
        env.sim.point_webhooks(rec.url)
        primary, merged = env.sim.record_ids()[:2]
        env.sim.merge_contacts(primary, merged)
        await env.sim.hooks.drain()
    changes = [c for h, b in rec.received for c in env.adapter.parse_webhook(h, b).changes]
    assert CrmChange(crm_object="people", record_id=primary, kind="merged",
                     merged_from=merged) in changes


async def test_a_renamed_company_shows_its_new_name_and_frees_the_old_one(env: Env) -> None:
    """1. a contact gets company "Old Name Co" (created) 2. the company is renamed in
    the app 3. a new full listing 4. a contact is given "Old Name Co" again.
    Result: the listing shows the new name (names are read again each full listing);
    the old name is no longer taken for that company: a new one is created."""
    first, second = env.sim.record_ids()[:2]
    await env.adapter.update_person("people", first, PersonChanges(company="Old Name Co"))
    (company_id,) = company_links(env.sim, first)
    company = env.sim.companies.get(int(company_id))
    assert company is not None
    env.sim.update(company, {"name": "New Name Co"}, source=("CRM_UI", "userId:1"))
    cursor: str | None = None
    names: dict[str, str | None] = {}
    while True:
        page = await env.adapter.fetch_page("people", cursor, 50)
        names |= {r.record_id: env.adapter.to_person(r).company for r in page.records}
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert names[first] == "New Name Co"
    await env.adapter.update_person("people", second, PersonChanges(company="Old Name Co"))
    assert company_links(env.sim, second) != [company_id]
