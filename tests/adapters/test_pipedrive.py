"""The Pipedrive adapter against the Pipedrive simulator on a real socket.

Covers the newest-first listing across pages (and resumed from a stored cursor by a new
adapter), the changed-since listing, organizations resolved with one call per page,
national phones read in the company's country, lookups by phone, notes, person writes,
webhook set-up (idempotent; a rotated API key replaces it), real deliveries checked
and parsed, and both kinds of 429. Requests are counted by the simulator (per route
template) and seen by an aiohttp trace on the client session (paths and queries).
Answers the simulator never gives (a 200 with a deleted person, bodies missing their
lists) come from a small fake in test_pipedrive_decode.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace

import aiohttp
import pytest
from support.adapter_http import all_pages, receiver

from crmsync.adapters.base import CrmAdapter, NoteInput, PersonChanges
from crmsync.adapters.errors import CrmAuthError, CrmNotFoundError, CrmRateLimitedError
from crmsync.adapters.pipedrive import PipedriveAdapter
from crmsync.adapters.pipedrive_values import search_terms
from crmsync.adapters.pipedrive_webhooks import credentials
from crmsync.domain.contact import to_e164
from crmsync.net.ratelimit import LimiterRegistry, slot_trace_config
from crmsync.net.retry import RetryPolicy
from crmsync.sim.pipedrive import PipedriveSim, PipedriveSimConfig, run_pipedrive_simulator
from crmsync.sim.pipedrive.model import Note
from crmsync.sim.quo.testing import wait_until

KEY = "pipedrive-test-key"
OTHER_KEY = "pipedrive-rotated-key"
PEOPLE = 60
PAGE = 20
PERSONS = "/api/v2/persons"
ORGS = "/api/v2/organizations"


@dataclass
class Env:
    sim: PipedriveSim
    base_url: str
    adapter: PipedriveAdapter
    session: aiohttp.ClientSession
    registry: LimiterRegistry
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def adapter_for(self, api_key: str = KEY, **options: object) -> PipedriveAdapter:
        return PipedriveAdapter(self.session, api_key=api_key, base_url=self.base_url,
                                timeout=5, **options)  # type: ignore[arg-type]

    def queries(self, path: str) -> list[dict[str, str]]:
        return [q for m, p, q in self.seen if m == "GET" and p == path]


def recording_trace(seen: list[tuple[str, str, dict[str, str]]]) -> aiohttp.TraceConfig:
    async def start(
        _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        seen.append((params.method, params.url.path, dict(params.url.query)))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(start)
    return trace


@contextlib.asynccontextmanager
async def pipedrive_env(people: int = PEOPLE, **config: object) -> AsyncIterator[Env]:
    seen: list[tuple[str, str, dict[str, str]]] = []
    sim_config = PipedriveSimConfig(people=people, api_keys=[KEY, OTHER_KEY],
                                    **config)  # type: ignore[arg-type]
    registry = LimiterRegistry()
    async with (
        run_pipedrive_simulator(config=sim_config) as (sim, base_url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config(), recording_trace(seen)]) as s,
    ):
        adapter = PipedriveAdapter(s, api_key=KEY, base_url=base_url, timeout=5,
                                   limiters=registry)
        yield Env(sim, base_url, adapter, s, registry, seen)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with pipedrive_env() as env:
        yield env


def test_the_adapter_is_a_crm_adapter() -> None:
    adapter: CrmAdapter = PipedriveAdapter.__new__(PipedriveAdapter)
    assert (adapter.name, adapter.webhooks_by_api, adapter.changes_lag) == (
        "pipedrive", True, 60.0)


# -- listings --------------------------------------------------------------------------


async def test_full_listing_is_newest_first_across_pages_and_resumes(env: Env) -> None:
    """1. page through every person, 20 a page
    2. a new adapter (a restart) resumes from the cursor stored after page 1
    Result: every live person once, `add_time` never increasing; the last page has no
    cursor; the resumed pages are the first pass's pages 2 and 3."""
    pages = await all_pages(env.adapter, PAGE)
    live = set(env.sim.record_ids())
    assert [len(p) for p in pages] == [20, 20, len(live) - 40]
    records = [r for page in pages for r in page]
    assert [r.record_id for r in records] == env.sim.newest_first()
    times = [r.raw["add_time"] for r in records]
    assert times == sorted(times, reverse=True)
    deleted = set(env.sim.facts.of("deleted"))
    assert deleted and not deleted & live
    for query in env.queries(PERSONS):
        assert (query["sort_by"], query["sort_direction"], query["limit"]) == (
            "add_time", "desc", "20")

    first = await env.adapter.fetch_page("people", None, PAGE)
    assert first.next_cursor is not None and first.next_cursor.startswith("a|")
    resumed = await all_pages(env.adapter_for(), PAGE, first.next_cursor)
    assert [[r.record_id for r in p] for p in resumed] == [
        [r.record_id for r in p] for p in pages[1:]]


async def test_page_size_is_capped_at_pipedrives_maximum(env: Env) -> None:
    page = await env.adapter.fetch_page("people", None, 5000)
    assert page.next_cursor is None and env.queries(PERSONS)[-1]["limit"] == "500"


async def test_changed_since_lists_only_the_changed_persons_oldest_change_first(
    env: Env,
) -> None:
    since = datetime.now(UTC).timestamp() - 1
    cursor = env.adapter.changed_since_cursor("people", since)
    assert cursor is not None and cursor.startswith("c|")
    assert await all_pages(env.adapter, PAGE, cursor) == [[]]
    changed = env.sim.record_ids()[3:8]
    for i, record_id in enumerate(changed):
        env.sim.update_person(record_id, job_title=f"Title {i}", notify=False)
    pages = await all_pages(env.adapter, 2, cursor)
    assert [len(p) for p in pages] == [2, 2, 1]
    records = [r for page in pages for r in page]
    assert sorted(r.record_id for r in records) == sorted(changed)
    times = [r.raw["update_time"] for r in records]
    assert times == sorted(times)
    for query in env.queries(PERSONS)[-3:]:
        assert (query["sort_by"], query["sort_direction"]) == ("update_time", "asc")
        assert query["updated_since"].endswith("Z")


async def test_fetch_by_ids_and_fetch_one(env: Env) -> None:
    live = env.sim.record_ids()
    deleted = env.sim.facts.of("deleted")[0]
    wanted = [*live[:3], deleted, "not-an-id", live[0]]
    records = await env.adapter.fetch_by_ids("people", wanted)
    assert sorted(r.record_id for r in records) == sorted(live[:3])
    assert await env.adapter.fetch_by_ids("people", []) == []
    one = await env.adapter.fetch_one("people", live[0])
    assert one is not None and one.record_id == live[0]
    assert await env.adapter.fetch_one("people", deleted) is None
    assert await env.adapter.fetch_one("people", "999999") is None


# -- organizations, persons, phones ----------------------------------------------------


async def test_organizations_are_resolved_with_one_call_per_page_and_cached(env: Env) -> None:
    """1. the first page: one organizations call for all its organizations
    2. the next pages: a call only for organizations not seen yet
    3. a new full listing: the cache is cleared, one call again
    Result: every person's company is its organization's name."""

    def org_calls() -> int:
        return env.sim.stats.count("GET", ORGS)

    first = await env.adapter.fetch_page("people", None, PAGE)
    assert org_calls() == 1
    wanted = {r.raw["org_id"] for r in first.records if r.raw["org_id"] is not None}
    assert set(env.queries(ORGS)[0]["ids"].split(",")) == {str(i) for i in wanted}
    cursor = first.next_cursor
    records = list(first.records)
    while cursor is not None:
        before = org_calls()
        page = await env.adapter.fetch_page("people", cursor, PAGE)
        assert org_calls() - before <= 1
        records += page.records
        cursor = page.next_cursor
    with_org = 0
    for record in records:
        company = env.adapter.to_person(record).company
        assert company == env.sim.org_name(record.raw["org_id"])
        with_org += company is not None
    assert with_org == len(set(env.sim.facts.with_org) - set(env.sim.facts.of("deleted")))
    before = org_calls()
    await env.adapter.fetch_page("people", None, PAGE)
    assert org_calls() == before + 1


async def test_person_values_and_web_url(env: Env) -> None:
    record_id = env.sim.add_person(
        first_name="Zoë", last_name="O'Brien", job_title="CTO", org_id=1,
        emails=[{"value": "z@x.com", "primary": False, "label": "home"},
                {"value": "zoe@x.com", "primary": True, "label": "work"}],
        phones=["(415) 555-0134", "+386 41 062 027"], notify=False)
    record = await env.adapter.fetch_one("people", record_id)
    assert record is not None
    person = env.adapter.to_person(record)
    assert (person.first_name, person.last_name, person.full_name) == (
        "Zoë", "O'Brien", "Zoë O'Brien")
    assert [e.value for e in person.emails] == ["zoe@x.com", "z@x.com"]
    assert [p.raw for p in person.phones] == ["(415) 555-0134", "+386 41 062 027"]
    assert [to_e164(p) for p in person.phones] == ["+14155550134", "+38641062027"]
    assert (person.job_title, person.company) == ("CTO", env.sim.org_name(1))
    assert person.web_url == f"https://acme.pipedrive.com/person/{record_id}"


async def test_national_phones_are_read_in_the_company_country(env: Env) -> None:
    national = env.sim.facts.of("national_phone")
    assert national
    for record in await env.adapter.fetch_by_ids("people", national):
        (phone,) = env.adapter.to_person(record).phones
        assert not phone.raw.startswith("+") and phone.country_code == "US"
        e164 = to_e164(phone)
        assert e164 is not None and e164.startswith("+1")


async def test_a_company_elsewhere_reads_its_own_national_format() -> None:
    async with pipedrive_env(0, company_country="SI", company_domain="") as env:
        typed = env.sim.add_person(name="Ana", phones=["041 062 027"], notify=False)
        international = env.sim.add_person(name="Bor", phones=["+386 41 062 027"],
                                           notify=False)
        env.sim.add_person(name="Cene", phones=["041 062 028"], notify=False)
        # The digits of a US number's national form, typed here: a Slovenian number.
        us_digits = env.sim.add_person(name="Dan", phones=["415 555 0134"], notify=False)
        (record,) = await env.adapter.fetch_by_ids("people", [typed])
        (phone,) = env.adapter.to_person(record).phones
        assert (phone.country_code, to_e164(phone)) == ("SI", "+38641062027")
        assert env.adapter.to_person(record).web_url == (
            f"https://app.pipedrive.com/person/{typed}")
        found = await env.adapter.find_people_by_phone("+38641062027")
        assert sorted(found) == sorted([typed, international])
        # The search finds Dan by digits; read in the company's country it is no match.
        before = env.sim.stats.count("GET", f"{PERSONS}/search", 200)
        assert await env.adapter.find_people_by_phone("+14155550134") == []
        assert env.sim.stats.count("GET", f"{PERSONS}/search", 200) == before + 2
        assert us_digits not in found


async def test_find_people_by_phone_finds_both_people_sharing_a_number(env: Env) -> None:
    shared = env.sim.facts.shared_phones
    assert shared
    for e164, record_ids in shared.items():
        before = env.sim.stats.count("GET", f"{PERSONS}/search")
        assert sorted(await env.adapter.find_people_by_phone(e164)) == sorted(record_ids)
        assert env.sim.stats.count("GET", f"{PERSONS}/search") - before == len(
            search_terms(e164))
    for query in env.queries(f"{PERSONS}/search"):
        assert (query["fields"], query["exact_match"]) == ("phone", "true")
    assert await env.adapter.find_people_by_phone("+12025550199") == []


# -- notes -----------------------------------------------------------------------------


async def test_notes_are_written_found_by_marker_and_deleted(env: Env) -> None:
    person = env.sim.record_ids()[0]
    note_id = await env.adapter.write_note(NoteInput(
        crm_object="people", person_id=person, title="SMS in <b>",
        markdown="**Hello** [link](https://quo.example/c/1)\n\nquo:msg_1",
        created_at="2025-01-01T10:20:00Z",
    ))
    (stored,) = env.sim.notes_of(person)
    assert str(stored["id"]) == note_id
    assert stored["content"].startswith("<p><b>SMS in &lt;b&gt;</b></p>")
    assert "<b>Hello</b>" in stored["content"] and "<p>quo:msg_1</p>" in stored["content"]
    assert stored["add_time"] == "2025-01-01 10:20:00"
    assert await env.adapter.find_note_ids("people", person, "quo:msg_1") == [note_id]
    assert await env.adapter.find_note_ids("people", person, "quo:msg") == []
    await env.adapter.delete_note(note_id)
    await env.adapter.delete_note(note_id)  # already gone: fine
    assert env.sim.notes_of(person) == []
    assert await env.adapter.find_note_ids("people", person, "quo:msg_1") == []


async def test_find_note_ids_pages_through_every_note(env: Env) -> None:
    person = int(env.sim.record_ids()[1])
    now = env.sim.now()
    for i in range(230):
        note_id = env.sim.next_id("note")
        env.sim.notes[note_id] = Note(note_id, f"<p>quo:call_{i}</p>", person, None,
                                      env.sim.config.user_id, now, now)
    found = await env.adapter.find_note_ids("people", str(person), "quo:call_215")
    assert len(found) == 1 and env.sim.notes[int(found[0])].content == "<p>quo:call_215</p>"
    assert [q["start"] for q in env.queries("/v1/notes")] == ["0", "100", "200"]


# -- writes ----------------------------------------------------------------------------


async def test_update_person_writes_every_field_and_resolves_the_company(env: Env) -> None:
    record_id = env.sim.record_ids()[2]
    orgs_before = len(env.sim.orgs)
    record = await env.adapter.update_person("people", record_id, PersonChanges(
        first_name="Ada", last_name="Lovelace", job_title="CTO", company="Brand New Co",
        emails=("ada@x.com", "ada@y.com"), phones=("+15558675309",),
    ))
    assert len(env.sim.orgs) == orgs_before + 1
    stored = env.sim.person(record_id)
    assert (stored["name"], stored["first_name"], stored["last_name"]) == (
        "Ada Lovelace", "Ada", "Lovelace")
    assert stored["emails"] == [{"value": "ada@x.com", "primary": True, "label": "work"},
                                {"value": "ada@y.com", "primary": False, "label": "other"}]
    assert stored["phones"] == [
        {"value": "+15558675309", "primary": True, "label": "mobile"}]
    assert env.sim.org_name(stored["org_id"]) == "Brand New Co"
    person = env.adapter.to_person(record)
    assert (person.company, person.job_title, person.first_name) == (
        "Brand New Co", "CTO", "Ada")

    # The same name (another case) finds the organization instead of creating one.
    await env.adapter.update_person("people", record_id, PersonChanges(company="brand new co"))
    assert len(env.sim.orgs) == orgs_before + 1
    cleared = await env.adapter.update_person("people", record_id, PersonChanges(
        company=None, job_title=None, phones=()))
    stored = env.sim.person(record_id)
    assert (stored["org_id"], stored["job_title"], stored["phones"]) == (None, None, [])
    assert env.adapter.to_person(cleared).company is None
    unchanged = await env.adapter.update_person("people", record_id, PersonChanges())
    assert unchanged.raw == env.sim.person(record_id)


async def test_update_of_a_deleted_person_is_not_found(env: Env) -> None:
    deleted = env.sim.facts.of("deleted")[0]
    with pytest.raises(CrmNotFoundError):
        await env.adapter.update_person("people", deleted, PersonChanges(job_title="X"))
    with pytest.raises(CrmNotFoundError):
        await env.adapter.update_person("people", deleted, PersonChanges())


async def test_create_person_uses_an_existing_organization(env: Env) -> None:
    existing = env.sim.org_name(1)
    assert existing is not None
    orgs_before = len(env.sim.orgs)
    record = await env.adapter.create_person("people", PersonChanges(
        first_name="New", last_name="Person", company=existing.upper(),
        phones=("+14155550134",), emails=("new@x.com",),
    ))
    assert len(env.sim.orgs) == orgs_before
    stored = env.sim.person(record.record_id)
    assert (stored["name"], stored["org_id"]) == ("New Person", 1)
    assert env.adapter.to_person(record).company == existing
    assert env.sim.stats.count("POST", PERSONS) == 1
    nameless = await env.adapter.create_person("people", PersonChanges(
        phones=("+14155550135",)))
    assert env.sim.person(nameless.record_id)["name"] == "+14155550135"


# -- webhooks --------------------------------------------------------------------------

async def test_ensure_webhook_is_idempotent_and_replaces_a_stale_one(env: Env) -> None:
    url = "https://sync.example.com/webhooks/t1/crm"
    webhook_id, secret = await env.adapter.ensure_webhook(url)
    assert secret == credentials(KEY, url).secret
    (hook,) = env.sim.webhooks.values()
    assert (str(hook.id), hook.event_action, hook.event_object, hook.user_id) == (
        webhook_id, "*", "person", env.sim.config.user_id)
    assert f"{hook.http_auth_user}:{hook.http_auth_password}" == secret
    assert await env.adapter.ensure_webhook(url) == (webhook_id, secret)
    assert env.sim.stats.count("POST", "/v1/webhooks") == 1

    # A rotated API key: the webhook's user no longer matches, so it is replaced.
    rotated = env.adapter_for(OTHER_KEY)
    new_id, new_secret = await rotated.ensure_webhook(url)
    assert new_id != webhook_id and new_secret != secret
    assert [str(h.id) for h in env.sim.webhooks.values()] == [new_id]

    # One Pipedrive deactivated is replaced too; another URL's webhook is left alone.
    other_id, _ = await rotated.ensure_webhook(url + "-other")
    env.sim.webhooks[int(new_id)].is_active = False
    newest, _ = await rotated.ensure_webhook(url)
    assert sorted(str(h.id) for h in env.sim.webhooks.values()) == sorted([other_id, newest])
    assert newest not in (new_id, other_id)


async def test_deliveries_verify_with_the_secret_and_parse(env: Env) -> None:
    """1. ensure the webhook on a real endpoint 2. change, create and merge persons
    Result: every delivery carries Basic credentials that verify with the secret
    `ensure_webhook` returned (and not with another), and parses to the person change."""
    async with receiver("/webhooks/t1/crm") as rec:
        received, url = rec.received, rec.url
        _, secret = await env.adapter.ensure_webhook(url)
        assert secret is not None
        live = env.sim.record_ids()
        env.sim.update_person(live[0], job_title="Boss")
        await wait_until(lambda: len(received) == 1)
        headers, body = received[0]
        env.adapter.verify_webhook(headers, body, secret, method="POST", url=url)
        with pytest.raises(Exception, match="does not match"):
            env.adapter.verify_webhook(headers, body, secret + "x")
        event = env.adapter.parse_webhook(headers, body)
        assert event.event_type == "change.person"
        assert [(c.record_id, c.kind) for c in event.changes] == [(live[0], "updated")]

        created = env.sim.add_person(name="New")
        env.sim.merge_persons(live[1], live[2])
        await wait_until(lambda: len(received) == 4)
        events = [env.adapter.parse_webhook(h, b) for h, b in received[1:]]
        for h, b in received[1:]:
            env.adapter.verify_webhook(h, b, secret)
        changes = sorted((c.record_id, c.kind) for e in events for c in e.changes)
        assert changes == sorted([(created, "created"), (live[1], "deleted"),
                                  (live[2], "updated")])
        assert len({e.event_id for e in events}) == 3


# -- errors and limits -----------------------------------------------------------------


async def test_a_wrong_key_is_an_auth_error(env: Env) -> None:
    with pytest.raises(CrmAuthError, match="unauthorized access"):
        await env.adapter_for("wrong-key").fetch_page("people", None, PAGE)


async def test_a_burst_429_waits_for_retry_after_and_succeeds(env: Env) -> None:
    env.sim.faults.rate_limit_next = 1
    page = await env.adapter.fetch_page("people", None, PAGE)
    assert len(page.records) == PAGE
    assert env.sim.stats.count("GET", PERSONS, 429) == 1
    assert env.sim.stats.count("GET", PERSONS, 200) == 1


async def test_the_lite_plans_burst_budget_is_kept() -> None:
    """25 lookups and 5 phone searches at once against a company on the Lite plan (20
    per 2 s, searches counted there too): none is refused."""
    async with pipedrive_env(burst_limit=20) as env:
        ids = env.sim.record_ids()[:25]
        await env.adapter.fetch_by_ids("people", ids[:1])  # the account, asked once
        await asyncio.gather(
            *(env.adapter.fetch_one("people", i) for i in ids),
            *(env.adapter.find_people_by_phone(f"+1415555013{i}") for i in range(5)),
        )
        assert env.sim.stats.rate_limited == 0
        assert env.sim.stats.max_in_any_window[KEY] <= 20
        assert env.sim.stats.max_search_in_any_window[KEY] <= 10


async def test_a_spent_daily_budget_backs_off_instead_of_spinning(env: Env) -> None:
    """1. the company's daily budget is spent: every request 429, no headers
    2. fetch a page (2 retries)
    Result: three requests, then `CrmRateLimitedError`; the key is parked for
    `max_pause`, so the next call (after the budget was reset) waits that long."""
    adapter = env.adapter_for(retry=RetryPolicy(max_retries=2, base_delay=0.05),
                              max_pause=0.5, limiters=env.registry)
    await adapter.fetch_one("people", env.sim.record_ids()[0])  # the account, asked once
    env.sim.reset_budget(total=0)
    with pytest.raises(CrmRateLimitedError):
        await adapter.fetch_page("people", None, PAGE)
    assert env.sim.stats.budget_refused == 3
    paused = [limiter.paused_for for _, limiter in env.registry.items()]
    assert len(paused) == 2 and all(0.3 < p <= 0.5 for p in paused)
    env.sim.reset_budget(total=1_000_000)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await adapter.fetch_page("people", None, PAGE)
    assert loop.time() - started >= 0.3
    assert env.sim.stats.budget_refused == 3
