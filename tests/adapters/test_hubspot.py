"""The HubSpot adapter against the HubSpot simulator on a real socket: listings.

Covers the full listing newest first across pages (ties at page edges included), the
10,000-result cap of search (more records at one instant than one query reaches),
cursors resumed by another adapter, changed-since listings, company names with one
association read and one companies read per page, and the limits (each search page
within 4 per second, 429s without `Retry-After` retried). Requests are counted by the
simulator (per route) and by a trace on the client session, which also sees bodies.
Writes, notes, phones and webhooks: `test_hubspot_writes.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from support.adapter_http import Seen, all_pages, recording_trace

from crmsync.adapters.base import CrmRecord
from crmsync.adapters.hubspot import HubSpotAdapter
from crmsync.net.ratelimit import LimiterRegistry, Limits, key_fingerprint, slot_trace_config
from crmsync.net.retry import RetryPolicy
from crmsync.sim.hubspot import HubSpotSim, HubSpotSimConfig, run_hubspot_simulator

KEY = "hubspot-test-key"
SEARCH = "/crm/v3/objects/contacts/search"
LINKS = "/crm/v4/associations/contacts/companies/batch/read"
NAMES = "/crm/v3/objects/companies/batch/read"


@dataclass
class Env:
    sim: HubSpotSim
    base_url: str
    adapter: HubSpotAdapter
    session: aiohttp.ClientSession
    registry: LimiterRegistry
    seen: list[Seen] = field(default_factory=list)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [json.loads(s.body) for s in self.seen if s.path == path]

    def paths(self) -> list[str]:
        return [s.path for s in self.seen]

    def adapter_again(self) -> HubSpotAdapter:
        """Another adapter on the same account (a restarted daemon)."""
        return HubSpotAdapter(self.session, api_key=KEY, base_url=self.base_url, timeout=5,
                              limiters=self.registry, retry=FAST_RETRY)


FAST_RETRY = RetryPolicy(max_retries=8, base_delay=0.1, max_delay=1.0)


@contextlib.asynccontextmanager
async def hubspot_env(
    people: int = 60, *, fast: bool = False, **config: Any
) -> AsyncIterator[Env]:
    """`fast`: the simulator and the adapter allow many more requests than HubSpot
    (for listings of 10,000+ contacts); otherwise both keep HubSpot's limits."""
    if fast:
        config = {"requests_per_ten_seconds": 100_000, "search_per_second": 10_000, **config}
    registry = LimiterRegistry()
    if fast:
        registry.for_account("hubspot", KEY, Limits(rate=100_000, window=10.0))
        registry.for_account("hubspot-search", KEY, Limits(rate=10_000, window=1.0))
    seen: list[Seen] = []
    async with (
        run_hubspot_simulator(config=HubSpotSimConfig(people=people, **config)) as (sim, url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config(), recording_trace(seen)]) as s,
    ):
        adapter = HubSpotAdapter(s, api_key=KEY, base_url=url, timeout=10, limiters=registry,
                                 retry=FAST_RETRY)
        yield Env(sim, url, adapter, s, registry, seen)


def ids(pages: list[list[CrmRecord]]) -> list[str]:
    return [r.record_id for page in pages for r in page]


# -- the full listing ------------------------------------------------------------------


async def test_the_full_listing_is_newest_first_and_every_contact_once() -> None:
    """60 seeded contacts (ties, backdated imports, archived ones) in pages of 7.
    Result: exactly the live contacts, newest first (ties by id, as search sorts
    them), none twice; every page is one search sorted `createdate DESCENDING`."""
    async with hubspot_env(60) as env:
        assert env.sim.facts.tied and env.sim.facts.backdated and env.sim.facts.archived
        pages = await all_pages(env.adapter, 7)
        assert ids(pages) == env.sim.newest_first()
        assert all(len(p) == 7 for p in pages[:-1])
        searches = env.bodies(SEARCH)
        assert len(searches) == len(pages)
        assert all(b["sorts"] == [{"propertyName": "createdate", "direction": "DESCENDING"}]
                   for b in searches)
        assert "filterGroups" not in searches[0]
        assert all(b["filterGroups"][0]["filters"][0]["operator"] == "LTE"
                   for b in searches[1:])
        assert env.sim.stats.count("POST", SEARCH, 400) == 0


async def test_ties_at_page_edges_are_skipped_by_offset_not_repeated_or_lost() -> None:
    """1. 5 contacts at instant B, 6 at instant A (older), 1 at C (newest)
    2. list in pages of 4: page edges fall inside both tied groups
    Result: newest first, every contact once; a page inside a tie skips (`after`) the
    tied contacts already listed."""
    async with hubspot_env(0) as env:
        base = 1_735_725_600_000
        for at, count in ((base, 6), (base + 1000, 5), (base + 2000, 1)):
            for _ in range(count):
                env.sim.add_contact(created_at_ms=at, notify=False, firstname="T")
        pages = await all_pages(env.adapter, 4)
        assert ids(pages) == env.sim.newest_first()
        assert len(ids(pages)) == 12
        afters = [int(b.get("after", 0)) for b in env.bodies(SEARCH)]
        # C and 3 of B | B skipping 3: 2 of B, 2 of A | A skipping 2: the other 4, last
        assert afters == [0, 3, 2]
        assert [len(p) for p in pages] == [4, 4, 4]


async def test_more_than_10000_contacts_at_one_instant_are_listed_by_id() -> None:
    """1. 20 seeded contacts, then 10,050 imported at one millisecond, then 3 newer
    2. list in pages of 200
    Result: every contact listed, no search beyond the 10,000 cap (no 400): the
    offset inside the instant reaches the cap, so the instant is listed again by
    `hs_object_id` (keyset), then the listing goes on strictly below it."""
    async with hubspot_env(20, fast=True) as env:
        instant = 1_750_000_000_000
        crowd = env.sim.bulk_add_contacts(10_050, created_at_ms=instant)
        newer = [env.sim.add_contact(created_at_ms=instant + i + 1, notify=False,
                                     firstname="N") for i in range(3)]
        pages = await all_pages(env.adapter, 200)
        listed = ids(pages)
        assert set(listed) == set(env.sim.newest_first())
        assert env.sim.stats.count("POST", SEARCH, 400) == 0
        # Outside the crowded instant every contact comes exactly once, in order.
        crowded = set(crowd)
        outside = [i for i in listed if i not in crowded]
        assert outside == [i for i in env.sim.newest_first() if i not in crowded]
        assert outside[:3] == newer[::-1]
        searches = env.bodies(SEARCH)
        by_id = [b for b in searches if b["sorts"][0]["propertyName"] == "hs_object_id"]
        assert by_id and all(
            b["filterGroups"][0]["filters"][0] == {
                "propertyName": "createdate", "operator": "EQ", "value": str(instant)}
            for b in by_id)
        below = searches[searches.index(by_id[-1]) + 1]
        assert below["filterGroups"][0]["filters"] == [
            {"propertyName": "createdate", "operator": "LT", "value": str(instant)}]
        assert max(int(b.get("after", 0)) + b["limit"] for b in searches) <= 10_000


async def test_a_cursor_resumes_with_another_adapter() -> None:
    """1. list two pages, keep the cursor (as the checkpoint table does) 2. a new
    adapter (a restarted daemon) goes on from it.
    Result: together exactly the listing, no contact twice."""
    async with hubspot_env(40) as env:
        first = await env.adapter.fetch_page("people", None, 9)
        second = await env.adapter.fetch_page("people", first.next_cursor, 9)
        assert second.next_cursor is not None
        rest = await all_pages(env.adapter_again(), 9, second.next_cursor)
        assert ids([first.records, second.records, *rest]) == env.sim.newest_first()


async def test_contacts_deleted_during_the_listing_do_not_shift_later_ones_out() -> None:
    """1. list 2 pages of 5 2. delete 3 contacts already listed 3. go on.
    Result: no contact that still exists is skipped (offsets would skip 3)."""
    async with hubspot_env(30) as env:
        first = await env.adapter.fetch_page("people", None, 5)
        second = await env.adapter.fetch_page("people", first.next_cursor, 5)
        for record in first.records[:3]:
            env.sim.delete_contact(record.record_id, notify=False)
        rest = await all_pages(env.adapter, 5, second.next_cursor)
        listed = ids([first.records, second.records, *rest])
        assert set(env.sim.newest_first()) <= set(listed)
        assert len(listed) == len(set(listed))


# -- changes since ---------------------------------------------------------------------


async def test_changed_since_lists_the_changes_oldest_first() -> None:
    """1. 40 seeded contacts (all modified long ago) 2. three edited now, one created
    3. list from a cursor at the time before the edits.
    Result: exactly those four, oldest change first; the search filters
    `lastmodifieddate GTE` the instant in ms and sorts ASCENDING."""
    async with hubspot_env(40) as env:
        since = 1_900_000_000.0  # far after every change
        live = env.sim.record_ids()
        edited = [live[5], live[1], live[20]]
        for record_id in edited:
            env.sim.update_contact(record_id, jobtitle=f"Edited {record_id}", notify=False)
            await asyncio.sleep(0.002)  # distinct milliseconds, so the order is certain
        added = env.sim.add_contact(firstname="New", notify=False)
        cursor = env.adapter.changed_since_cursor("people", 1_600_000_000.0)
        assert cursor is not None
        body_since = json.loads(cursor)["bound"]
        assert body_since == 1_600_000_000_000
        now_cursor = env.adapter.changed_since_cursor("people", since)
        assert ids(await all_pages(env.adapter, 10, now_cursor)) == []
        recent = env.adapter.changed_since_cursor(
            "people", env.sim.contact(edited[0]).updated_ms / 1000 - 0.0005)
        listed = ids(await all_pages(env.adapter, 2, recent))
        assert listed == [*edited, added]
        first = env.bodies(SEARCH)[-3]
        assert first["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
        assert first["filterGroups"][0]["filters"][0]["operator"] == "GTE"


async def test_a_change_during_a_changes_listing_does_not_skip_another_record() -> None:
    """1. 6 contacts changed after T 2. list 2 of them 3. one listed contact changes
    again (it moves to the end) 4. go on.
    Result: every one of the 6 is listed (the edited one twice); offset paging would
    have skipped the contact after the page edge."""
    async with hubspot_env(10) as env:
        live = env.sim.record_ids()[:6]
        for record_id in live:
            env.sim.update_contact(record_id, jobtitle="First", notify=False)
            await asyncio.sleep(0.002)
        start = env.sim.contact(live[0]).updated_ms / 1000
        first = await env.adapter.fetch_page(
            "people", env.adapter.changed_since_cursor("people", start), 2)
        assert [r.record_id for r in first.records] == live[:2]
        env.sim.update_contact(live[0], jobtitle="Again", notify=False)
        rest = ids(await all_pages(env.adapter, 2, first.next_cursor))
        assert rest == [*live[2:], live[0]]


# -- companies -------------------------------------------------------------------------


async def test_companies_are_read_with_one_association_and_one_companies_read_per_page(
) -> None:
    """1. list pages of 10 2. list page 0 again (a new pass re-reads names).
    Result: per page one search, one association batch read for the page's contacts
    and at most one companies batch read, only for companies not cached; the account
    details once. Names: the primary company's, else the first one's, else the text."""
    async with hubspot_env(60) as env:
        cursor: str | None = None
        named: set[str] = set()
        pages = 0
        while True:
            before = len(env.seen)
            page = await env.adapter.fetch_page("people", cursor, 10)
            paths = [s.path for s in env.seen[before:]]
            pages += 1
            assert paths.count(SEARCH) == 1
            assert paths.count(LINKS) == (1 if page.records else 0)
            assert paths.count(NAMES) <= 1
            inputs = [i["id"] for s in env.seen[before:] if s.path == NAMES
                      for i in json.loads(s.body)["inputs"]]
            assert not named & set(inputs)  # cached names are not read again
            named |= set(inputs)
            links = [json.loads(s.body) for s in env.seen[before:] if s.path == LINKS]
            if links:
                assert [i["id"] for i in links[0]["inputs"]] == [r.record_id
                                                                  for r in page.records]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert env.paths().count("/account-info/v3/details") == 1
        again = len(env.seen)
        await env.adapter.fetch_page("people", None, 10)
        assert [s.path for s in env.seen[again:]].count(NAMES) == 1


async def test_the_company_is_the_primary_association_then_the_text() -> None:
    async with hubspot_env(60) as env:
        facts = env.sim.facts
        records = {r.record_id: r for r in await env.adapter.fetch_by_ids(
            "people", facts.two_companies + facts.stale_company_text
            + facts.company_text_only)}
        for record_id in facts.two_companies + facts.stale_company_text:
            contact = env.sim.contact(record_id)
            if contact.archived:
                continue
            primary = env.sim.companies.get(contact.primary_company or 0)
            assert primary is not None
            person = env.adapter.to_person(records[record_id])
            assert person.company == primary.properties["name"]
        for record_id in facts.company_text_only:
            if env.sim.contact(record_id).archived:
                continue
            person = env.adapter.to_person(records[record_id])
            assert person.company == env.sim.contact(record_id).properties["company"]
        some = records[facts.two_companies[0]]
        assert env.adapter.to_person(some).web_url == env.sim.web_url(some.record_id)


# -- limits ----------------------------------------------------------------------------


async def test_the_adapter_keeps_hubspots_limits_per_token() -> None:
    """Every call but search shares 100 per rolling 10 s; search has 4 per second."""
    async with hubspot_env(30) as env:
        phones = [p for i in env.sim.record_ids() for p in env.sim.person_phones(i)][:10]
        await asyncio.gather(*(env.adapter.find_people_by_phone(p) for p in phones))
        assert env.sim.stats.max_search_in_any_second[KEY] <= 4
        assert env.sim.stats.rate_limited == 0
        limits = dict(env.registry.items())
        fingerprint = key_fingerprint(KEY)
        assert (limits[f"hubspot:{fingerprint}"].rate,
                limits[f"hubspot:{fingerprint}"].window) == (100, 10.0)
        assert (limits[f"hubspot-search:{fingerprint}"].rate,
                limits[f"hubspot-search:{fingerprint}"].window) == (4, 1.0)


async def test_a_429_without_retry_after_is_retried_after_a_backoff() -> None:
    """The 10-second window's 429 (another app sharing the portal's bucket) has no
    `Retry-After`: the transport pauses the key for a jittered backoff and retries."""
    async with hubspot_env(10) as env:
        record_id = env.sim.record_ids()[0]
        env.sim.faults.rate_limit_next = 2
        assert await env.adapter.fetch_one("people", record_id) is not None
        assert env.sim.stats.rate_limited == 2
        assert env.sim.stats.count("GET", "/crm/v3/objects/contacts/{object_id}", 200) == 1


async def test_a_search_429_is_retried_and_the_listing_goes_on() -> None:
    """The portal allows 1 search per second (another app uses the rest): the
    adapter's 4 per second draw SECONDLY 429s, each retried after a backoff."""
    async with hubspot_env(30, search_per_second=1) as env:
        pages = await all_pages(env.adapter, 10)
        assert ids(pages) == env.sim.newest_first()
        assert env.sim.stats.count("POST", SEARCH, 429) >= 1
