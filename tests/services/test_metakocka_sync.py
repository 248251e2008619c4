"""CRM people ⇄ Metakocka partners (`services/metakocka_push.py`, `metakocka_pull.py`)
against the Attio, Quo and Metakocka simulators on 127.0.0.1 and a real SQLite state
database.

People reach Quo the daemon's way (`CrmChangeHandler`, which stores the Quo mappings);
the pusher's sweep then takes what the Quo path wrote to Metakocka, as in the daemon.
Metakocka calls are counted per endpoint and per company in the simulator.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from actors.harness import TENANT, Attio, Quo, attio_env, quo_env, state_store

from crmsync.adapters.base import CrmRecord, PersonChanges
from crmsync.domain.partner import name_key, partner_fields
from crmsync.metakocka.client import MetakockaClient, SearchLocks
from crmsync.net.ratelimit import Lane, SlidingWindowLimiter
from crmsync.net.retry import RetryPolicy
from crmsync.services.contact_writes import QuoContactSync, RecordWriter
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.services.metakocka_pull import MetakockaPull
from crmsync.services.metakocka_push import (
    MetakockaCalls,
    MetakockaPush,
    MetakockaPusher,
    due_query,
)
from crmsync.sim.metakocka import CompanyConfig, MetakockaSimConfig, run_metakocka_simulator
from crmsync.sim.metakocka.state import MetakockaSim
from crmsync.store import Store

COMPANY, KEY = "16", "mk-key-16"
OTHER_COMPANY, OTHER_KEY = "27", "mk-key-27"
OTHER_TENANT = "globex"
WRITES = ("add_partner", "update_partner")


@dataclass
class Link:
    tenant: str
    company: str
    push: MetakockaPush
    pusher: MetakockaPusher
    pull: MetakockaPull


@dataclass
class World:
    attio: Attio
    quo: Quo
    store: Store
    mk: MetakockaSim
    crm_changes: CrmChangeHandler
    links: dict[str, Link]
    session: aiohttp.ClientSession
    url: str

    def calls(self, endpoint: str | None = None, company: str = COMPANY) -> int:
        return self.mk.stats.count(endpoint, company_id=company)

    def writes(self, company: str = COMPANY) -> int:
        return sum(self.calls(e, company) for e in WRITES)

    def crm_writes(self) -> int:
        return sum(n for key, n in self.attio.sim.stats.requests.items()
                   if key.split(" ")[0] in ("POST", "PATCH", "PUT", "DELETE")
                   and "/records" in key and "/query" not in key)

    async def people(self) -> list[CrmRecord]:
        records: list[CrmRecord] = []
        cursor: str | None = None
        while True:
            page = await self.attio.adapter.fetch_page("people", cursor, 100)
            records.extend(page.records)
            if page.next_cursor is None:
                return records
            cursor = page.next_cursor

    async def to_quo(self, records: list[CrmRecord]) -> list[str]:
        """The CRM → Quo path, as webhooks and polling run it."""
        return [await self.crm_changes.apply_record(r) for r in records]

    def link(self, tenant: str, company: str, key: str) -> Link:
        client = MetakockaClient(
            self.session, base_url=self.url, company_id=company, secret_key=key,
            limiter=SlidingWindowLimiter(1000), timeout=5.0,
            retry=RetryPolicy(max_retries=2, base_delay=0.01, max_delay=0.05),
            search_locks=SearchLocks(),
        )
        calls = MetakockaCalls(tenant, client)
        push = MetakockaPush(tenant, calls=calls, adapter=self.attio.adapter, store=self.store,
                             default_country="Slovenija", conflict="crm_wins", lane=Lane.LIVE)
        pull = MetakockaPull(tenant, calls=calls, adapter=self.attio.adapter, store=self.store,
                             crm_object="people", default_country="Slovenija",
                             conflict="crm_wins", discover_from=("sales_order",))
        return Link(tenant, company, push,
                    MetakockaPusher(tenant, push=push, due=due_query(self.store)), pull)


@contextlib.asynccontextmanager
async def world(tmp_path: Path, *, people: int = 0, documents: int = 0) -> AsyncIterator[World]:
    config = MetakockaSimConfig(companies=[
        CompanyConfig(COMPANY, KEY, calls_per_window=100_000, documents=documents,
                      partners=documents and 20),
        CompanyConfig(OTHER_COMPANY, OTHER_KEY, calls_per_window=100_000),
    ])
    async with (
        attio_env(people) as attio, quo_env() as quo, state_store(tmp_path) as store,
        run_metakocka_simulator(config=config) as (mk, url),
        aiohttp.ClientSession() as session,
    ):
        await store.tenants.upsert(OTHER_TENANT, "attio")
        records = RecordWriter(TENANT, store=store, sync=QuoContactSync(quo.client,
                                                                        lane=Lane.LIVE))
        crm_changes = CrmChangeHandler(TENANT, adapter=attio.adapter, store=store,
                                       quo=quo.client, records=records)
        w = World(attio, quo, store, mk, crm_changes, {}, session, url)
        w.links[TENANT] = w.link(TENANT, COMPANY, KEY)
        yield w


def duplicates(mk: MetakockaSim, company: str = COMPANY) -> list[str]:
    """Company names held by more than one business partner of the company (private
    partners may share a name: two people called Oliver Murphy are two partners)."""
    names = Counter(name_key(p.customer) for p in mk.companies[company].partners.values()
                    if p.business_entity)
    return [name for name, n in names.items() if n > 1]


def expected_partners(w: World, people: list[CrmRecord]) -> int:
    """One partner per company, one per person without a company."""
    fields = [partner_fields(w.attio.adapter.to_person(p)) for p in people]
    return len({name_key(f.customer) for f in fields if f.business_entity}) + sum(
        not f.business_entity for f in fields)


async def test_people_become_partners_once_a_resync_writes_nothing_changes_update(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, people=300) as w:
        link = w.links[TENANT]
        people = await w.people()
        assert len(people) == 300
        await w.to_quo(people)
        assert await link.pusher.sweep() == 300
        partners = w.mk.companies[COMPANY].partners
        assert await w.store.mk_links.count(TENANT) == 300
        assert w.calls("add_partner") == len(partners) == expected_partners(w, people)
        assert duplicates(w.mk) == []
        linked = {(x.mk_id, x.mk_contact_id) async for x in w.store.mk_links.iter_all(TENANT)}
        assert len(linked) == 300  # one contact per person
        print(f"300 people → {len(partners)} partners, calls {w.mk.stats.by_endpoint()}")

        # A re-sync (every record written to Quo again, unchanged): no Metakocka call.
        w.mk.stats.reset()
        await w.to_quo(await w.people())
        assert await link.pusher.sweep() == 300
        assert w.mk.stats.total == 0

        # 10 people changed in the CRM → exactly 10 update_partner calls.
        changed = [p.record_id for p in people[:10]]
        for n, record_id in enumerate(changed):
            await w.attio.adapter.update_person(
                "people", record_id, PersonChanges(emails=(f"changed{n}@example.si",)))
        await w.to_quo(await w.attio.records(*changed))
        await link.pusher.sweep()
        assert w.calls("update_partner") == 10
        assert w.calls("add_partner") == 0
        for n, record_id in enumerate(changed):
            pair = await w.store.mk_links.get(TENANT, "people", record_id)
            assert pair is not None
            contact = w.mk.partner(COMPANY, pair.mk_id).contact(pair.mk_contact_id or "")
            assert contact is not None and contact.email == f"changed{n}@example.si"

        # Nothing changed since: the next sweep and a pull round write nothing anywhere.
        w.mk.stats.reset()
        crm_writes = w.crm_writes()
        await link.pusher.sweep()
        assert await link.pull.pull_due(0.0) == len(partners)
        assert w.writes() == 0  # no echo to Metakocka
        assert w.crm_writes() == crm_writes  # no echo to the CRM


async def test_a_dropped_add_partner_answer_never_duplicates_the_partner(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, people=3) as w:
        link = w.links[TENANT]
        people = await w.people()
        await w.to_quo(people)
        w.mk.faults.drop_after(1, route="/rest/eshop/v1/add_partner")
        first = await link.push.push_record(people[0])
        assert not first.ok and first.error_category == "transport"
        assert w.mk.faults.dropped_after_apply == 1
        assert len(w.mk.companies[COMPANY].partners) == 1  # applied, answer lost
        assert await w.store.mk_intents.get(TENANT, "people", people[0].record_id) is not None
        assert await w.store.dead_letters.counts_by_category(TENANT) == {
            "metakocka_transport": 1}

        again = await link.push.push_record(people[0])  # the lookup finds it
        assert again.ok and again.action == "linked", again
        assert w.calls("add_partner") == 1
        assert len(w.mk.companies[COMPANY].partners) == 1
        assert await w.store.mk_intents.get(TENANT, "people", people[0].record_id) is None
        await link.pusher.sweep()
        assert duplicates(w.mk) == []
        assert w.calls("add_partner") == len(w.mk.companies[COMPANY].partners)


async def test_two_tenants_on_two_companies_never_mix(tmp_path: Path) -> None:
    async with world(tmp_path, people=20) as w:
        other = w.links[OTHER_TENANT] = w.link(OTHER_TENANT, OTHER_COMPANY, OTHER_KEY)
        people = await w.people()
        await w.to_quo(people)
        await w.links[TENANT].pusher.sweep()
        ids = [p.record_id for p in people[:5]]
        results = await other.push.push_ids("people", ids)
        assert all(r.ok for r in results)
        assert w.mk.stats.count(outcome="3") == 0  # no call with the other's credentials
        ours, theirs = w.mk.companies[COMPANY].partners, w.mk.companies[OTHER_COMPANY].partners
        assert w.calls("add_partner", OTHER_COMPANY) == len(theirs) <= 5
        assert await w.store.mk_links.count(TENANT) == 20
        assert await w.store.mk_links.count(OTHER_TENANT) == 5
        async for pair in w.store.mk_links.iter_all(OTHER_TENANT):
            assert pair.mk_id in theirs and pair.mk_id not in ours
        async for pair in w.store.mk_links.iter_all(TENANT):
            assert pair.mk_id in ours and pair.mk_id not in theirs
        # The other tenant's pull touches only its own pairs and company.
        before = w.calls(company=COMPANY)
        await other.pull.pull_due(0.0)
        assert w.calls(company=COMPANY) == before


#: Colleagues the first contact matching would mix up (oldest first): namesakes, the
#: second with nothing but the name; two sharing the office switchboard, the second
#: with nothing else; and two private people of one name.
COLLEAGUES = (
    PersonChanges(first_name="Hanako", last_name="Takahashi", company="Alpina Inc.",
                  emails=("hanako.takahashi@alpina.com",), phones=("+819044639076",)),
    PersonChanges(first_name="Hanako", last_name="Takahashi", company="Alpina Inc."),
    PersonChanges(first_name="Marko", last_name="Novak", company="Alpina Inc.",
                  emails=("marko.novak@alpina.com",), phones=("+38614721000",)),
    PersonChanges(first_name="Petra", last_name="Kos", company="Alpina Inc.",
                  phones=("+38614721000",)),
    PersonChanges(first_name="Ana", last_name="Zupan", emails=("ana.zupan@gmail.com",)),
    PersonChanges(first_name="Ana", last_name="Zupan"),
)


async def test_colleagues_sharing_a_name_or_phone_pair_in_any_order(tmp_path: Path) -> None:
    """Whoever is pushed first, each person gets a contact of their own: a contact a
    colleague's pair holds is never the person's (nor picked after adding theirs)."""
    shuffled = list(range(len(COLLEAGUES)))
    random.Random(12).shuffle(shuffled)
    orders = {"oldest_first": list(range(len(COLLEAGUES))),
              "newest_first": list(reversed(range(len(COLLEAGUES)))), "shuffled": shuffled}
    for name, order in orders.items():
        (tmp_path / name).mkdir()
        async with world(tmp_path / name) as w:
            link = w.links[TENANT]
            people = [await w.attio.adapter.create_person("people", c) for c in COLLEAGUES]
            results = [await link.push.push_record(people[i]) for i in order]
            assert [r.error for r in results if not r.ok] == [], name
            partners = w.mk.companies[COMPANY].partners
            assert duplicates(w.mk) == [], name
            assert len(partners) == expected_partners(w, people) == 3, name
            pairs = {p.record_id: await w.store.mk_links.get(TENANT, "people", p.record_id)
                     for p in people}
            contacts = {(x.mk_id, x.mk_contact_id) for x in pairs.values() if x}
            assert len(contacts) == len(people), name  # no contact paired twice
            (company,) = [p for p in partners.values() if p.business_entity]
            assert len(company.contacts) == 4, name  # one per colleague, none left over
            for person, changes in zip(people, COLLEAGUES, strict=True):
                pair = pairs[person.record_id]
                assert pair is not None and pair.mk_contact_id is not None, name
                contact = w.mk.partner(COMPANY, pair.mk_id).contact(pair.mk_contact_id)
                assert contact is not None, name
                assert contact.name == f"{changes.first_name} {changes.last_name}", name
                assert contact.email == (changes.emails[0] if changes.emails else ""), name
            # In step now: pushed again, in the other direction, no Metakocka call.
            w.mk.stats.reset()
            again = [await link.push.push_record(people[i]) for i in reversed(order)]
            assert {r.action for r in again} == {"unchanged"}, name
            assert w.mk.stats.total == 0, name


async def test_a_namesakes_contact_added_with_its_answer_lost_is_found_not_added_again(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        link = w.links[TENANT]
        first, second = [await w.attio.adapter.create_person("people", c)
                         for c in COLLEAGUES[:2]]
        assert (await link.push.push_record(first)).action == "created"
        w.mk.faults.drop_after(1, route="/rest/eshop/v1/update_partner")
        lost = await link.push.push_record(second)
        assert not lost.ok and lost.error_category == "transport"
        (company,) = w.mk.companies[COMPANY].partners.values()
        assert len(company.contacts) == 2  # applied, answer lost

        # The lookup passes over the first Hanako's contact and finds the one added.
        again = await link.push.push_record(second)
        assert again.ok and again.action == "linked", again
        assert len(company.contacts) == 2
        assert w.calls("update_partner") == 1
        pairs = [await w.store.mk_links.get(TENANT, "people", p.record_id)
                 for p in (first, second)]
        assert len({x.mk_contact_id for x in pairs if x}) == 2


async def test_a_partner_edited_in_metakocka_reaches_the_crm_person_without_echo(
    tmp_path: Path,
) -> None:
    async with world(tmp_path, people=5) as w:
        link = w.links[TENANT]
        people = await w.people()
        await w.to_quo(people)
        await link.pusher.sweep()
        pair = await w.store.mk_links.get(TENANT, "people", people[0].record_id)
        assert pair is not None
        w.mk.edit_partner(COMPANY, pair.mk_id, email="edited.in.mk@example.si")
        w.mk.stats.reset()
        result = await link.pull.pull_partner(pair.mk_id, import_new=False)
        assert result.ok and result.action == "updated", result
        person = w.attio.adapter.to_person((await w.attio.records(people[0].record_id))[0])
        assert "edited.in.mk@example.si" in [e.value for e in person.emails]
        # The change goes to Quo as any CRM change; its sweep makes no Metakocka write.
        await w.to_quo(await w.attio.records(people[0].record_id))
        await link.pusher.sweep()
        assert w.writes() == 0
        # Read again: crmsync's own CRM write is no change either.
        again = await link.pull.pull_partner(pair.mk_id, import_new=False)
        assert again.action == "unchanged"


async def test_pull_of_real_and_unknown_ids_and_discovery(tmp_path: Path) -> None:
    async with world(tmp_path, documents=30) as w:
        link = w.links[TENANT]
        found = await link.pull.discover()
        unsynced = await w.store.mk_unsynced.list(TENANT)
        assert found >= len(unsynced) > 3
        ids = [u.mk_id for u in unsynced[:3]]
        results = await link.pull.pull_ids([*ids, "999999999999"])
        assert [r.ok for r in results] == [True, True, True, False]
        assert results[3].error_category == "not_found"
        assert all(r.action == "imported" for r in results[:3])
        for result in results[:3]:
            (record_id,) = result.crm_record_ids
            assert await w.attio.records(record_id)
        assert len(await w.store.mk_unsynced.list(TENANT)) == len(unsynced) - 3
        # A second discovery round starts from the watermark: nothing new is listed.
        await link.pull.discover()
        assert len(await w.store.mk_unsynced.list(TENANT)) == len(unsynced) - 3
