"""The Metakocka client against the strict simulator (`crmsync.sim.metakocka`) on a real
socket: every seeded partner reads back typed whatever shape it came in, writes land
once, the quirks (collapsed lists, no `opr_code` on add, "No partner …", "Quote
exceeds", HTML 404, one search at a time) are handled, two companies never mix."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from crmsync.metakocka.client import MetakockaClient, SearchLocks
from crmsync.metakocka.errors import (
    MetakockaAuthError,
    MetakockaEndpointError,
    MetakockaNotFoundError,
    MetakockaServerError,
    MetakockaTransportError,
)
from crmsync.metakocka.models import (
    BILLING,
    PartnerAddress,
    PartnerContact,
    PartnerInput,
    PartnerUpdate,
)
from crmsync.net.ratelimit import SlidingWindowLimiter, slot_trace_config
from crmsync.net.retry import RetryPolicy
from crmsync.sim.metakocka.config import CompanyConfig, MetakockaSimConfig
from crmsync.sim.metakocka.server import run_metakocka_simulator
from crmsync.sim.metakocka.state import MetakockaSim

FAST = RetryPolicy(max_retries=4, base_delay=0.01, max_delay=0.05)
A, B = CompanyConfig("16", "key-of-a", partners=30, documents=60), \
    CompanyConfig("17", "key-of-b", partners=10, documents=20)


@dataclass
class Env:
    sim: MetakockaSim
    url: str
    session: aiohttp.ClientSession
    locks: SearchLocks

    def client(self, company: CompanyConfig = A, *, secret: str | None = None,
               url: str | None = None, rate: int = 1000) -> MetakockaClient:
        return MetakockaClient(
            self.session, base_url=url or self.url, company_id=company.company_id,
            secret_key=secret or company.secret_key, limiter=SlidingWindowLimiter(rate),
            timeout=5, retry=FAST, search_locks=self.locks,
        )

    def calls(self, endpoint: str) -> int:
        """Calls of `endpoint` the simulator answered, any company, any outcome."""
        per_company = self.sim.stats.by_endpoint().get(endpoint, {})
        return sum(sum(outcomes.values()) for outcomes in per_company.values())


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    config = MetakockaSimConfig(companies=[A, B], one_element_as_object=0.5,
                                search_latency=0.02)
    async with (
        run_metakocka_simulator(config=config) as (sim, url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as session,
    ):
        yield Env(sim, url, session, SearchLocks())


def new_partner(name: str, email: str) -> PartnerInput:
    return PartnerInput(
        customer=name, business_entity=True, tax_id_number="SI12345678",
        street="Tehnološki park 24", post_number="1000", city="Ljubljana",
        country="Slovenija", contact=PartnerContact(name="Ana Novak", email=email,
                                                    gsm="041000111"),
    )


async def test_every_seeded_partner_reads_back_typed(env: Env) -> None:
    """1. a company seeded with 30 partners (every awkward case), half of its one-element
    lists answered as bare objects
    Result: each partner reads back with its id, name, kind, contacts and addresses as
    the simulator holds them; the partner without contacts has none."""
    client = env.client()
    company = env.sim.companies[A.company_id]
    for mk_id, held in company.partners.items():
        partner = await client.get_partner(mk_id)
        assert partner is not None
        assert (partner.mk_id, partner.customer, partner.count_code) == \
            (mk_id, held.customer, held.count_code)
        assert partner.business_entity == held.business_entity
        assert [c.mk_id for c in partner.contacts] == [c.mk_id for c in held.contacts]
        assert [a.mk_id for a in partner.addresses] == [a.mk_id for a in held.addresses]
        assert partner.addresses[0].address_type == BILLING
    for mk_id in env.sim.facts[A.company_id].without_contacts:
        partner = await client.get_partner(mk_id)
        assert partner is not None and partner.contacts == []


async def test_lookups_by_each_filter_and_a_miss(env: Env) -> None:
    """Result: name (substring: the private "Ana Novak"-like partner also finds the
    business one), email, phone and tax number find partners; a miss is []; an
    unknown id is None."""
    client = env.client()
    facts = env.sim.facts[A.company_id]
    private, business = facts.name_inside_other
    held = env.sim.partner(A.company_id, private)
    by_name = await client.find_partners(name=held.customer)
    assert {private, business} <= {p.mk_id for p in by_name}
    exact = [p for p in by_name if p.customer == held.customer]
    assert [p.mk_id for p in exact] == [private]
    contact = env.sim.partner(A.company_id, facts.business[0]).contacts[0]
    assert facts.business[0] in {p.mk_id for p in await client.find_partners(email=contact.email)}
    if contact.gsm:
        assert facts.business[0] in {p.mk_id for p in await client.find_partners(phone=contact.gsm)}
    tax = env.sim.partner(A.company_id, facts.business[0]).tax_id_number
    assert [p.mk_id for p in await client.find_partners(tax_number=tax)] == [facts.business[0]]
    assert await client.find_partners(email="nobody@nowhere.example") == []
    assert await client.get_partner("999999999999") is None


async def test_add_then_update_round_trip(env: Env) -> None:
    """1. add a partner with a contact; 2. update its name and contact, add a contact
    Result: the ids answered are the simulator's; the update's snapshot shows both
    contacts and the new name; the partner exists once."""
    client = env.client()
    added = await client.add_partner(new_partner("Round Trip d.o.o.", "rt@example.com"))
    held = env.sim.partner(A.company_id, added.mk_id)
    assert added.mk_contact_id == held.contacts[0].mk_id
    assert added.billing_address_id == held.addresses[0].mk_id
    updated = await client.update_partner(PartnerUpdate(
        mk_id=added.mk_id, customer="Round Trip 2 d.o.o.",
        contacts=[
            PartnerContact(mk_id=added.mk_contact_id, email="rt2@example.com"),
            PartnerContact(mk_address_id=added.billing_address_id, name="Second",
                           phone="01 123 45 67"),
        ],
        addresses=[PartnerAddress(mk_id=added.billing_address_id, street="Nova 1")],
    ))
    assert updated.customer == "Round Trip 2 d.o.o."
    assert [(c.name, c.email) for c in updated.contacts][1] == ("Second", None)
    assert updated.contacts[0].email == "rt2@example.com"
    assert updated.addresses[0].street == "Nova 1"
    assert len(await client.find_partners(name="Round Trip 2 d.o.o.")) == 1
    with pytest.raises(MetakockaNotFoundError):
        await client.update_partner(PartnerUpdate(mk_id="999999999999", customer="x"))


async def test_a_dropped_add_is_not_repeated(env: Env) -> None:
    """1. the simulator applies add_partner, then drops the connection
    Result: a transport error after one call; exactly one partner was created (no
    blind repeat), and a lookup finds it."""
    client = env.client()
    before = len(env.sim.companies[A.company_id].partners)
    env.sim.faults.drop_after(1, route="/rest/eshop/v1/add_partner")
    with pytest.raises(MetakockaTransportError):
        await client.add_partner(new_partner("Dropped d.o.o.", "dropped@example.com"))
    assert len(env.sim.companies[A.company_id].partners) == before + 1
    assert len(await client.find_partners(email="dropped@example.com")) == 1


async def test_reads_survive_html_5xx_and_writes_do_not_repeat(env: Env) -> None:
    """1. two HTML 503 pages on get_partner; 2. one on add_partner
    Result: the read is repeated and succeeds; the add is raised (nothing was applied
    here, but the client cannot know) after one call."""
    client = env.client()
    mk_id = next(iter(env.sim.companies[A.company_id].partners))
    env.sim.faults.fail(2, status=503, route="/rest/eshop/v1/get_partner")
    assert await client.get_partner(mk_id) is not None
    before = env.calls("add_partner")
    env.sim.faults.fail(1, status=503, route="/rest/eshop/v1/add_partner")
    with pytest.raises(MetakockaServerError):
        await client.add_partner(new_partner("Five Oh Three", "503@example.com"))
    assert env.calls("add_partner") == before + 1


async def test_quote_exceeds_is_waited_out(env: Env) -> None:
    """1. the simulator forces three "Quote exceeds" answers
    Result: the client pauses and repeats; the add lands once."""
    client = env.client()
    env.sim.faults.force_429(3)
    added = await client.add_partner(new_partner("Quota d.o.o.", "quota@example.com"))
    assert env.sim.partner(A.company_id, added.mk_id).customer == "Quota d.o.o."
    assert len(await client.find_partners(email="quota@example.com")) == 1


async def test_wrong_credentials_and_wrong_endpoint_family(env: Env) -> None:
    """Result: a wrong key is `MetakockaAuthError` (auth) and never shows the key; a
    base URL in the `json/` family is an HTML 404, `MetakockaEndpointError`."""
    with pytest.raises(MetakockaAuthError) as raised:
        await env.client(secret="wrong-key-123").get_partner("1")
    assert "wrong-key-123" not in str(raised.value)
    with pytest.raises(MetakockaEndpointError):
        await env.client(url=env.url + "/json").get_partner("1")


async def test_discovery_pages_through_documents(env: Env) -> None:
    """Result: paging `sales_order` 7 at a time yields every document once and the
    partner ids on them; `last_change_from` past the newest yields nothing."""
    client = env.client()
    company = env.sim.companies[A.company_id]
    orders = [d for d in company.documents if d.doc_type == "sales_order"]
    seen: list[str] = []
    partners: set[str] = set()
    offset = 0
    while True:
        page = await client.search_documents("sales_order", offset=offset, limit=7)
        seen.extend(d.mk_id for d in page.documents)
        partners.update(page.partner_ids)
        assert page.total == len(orders)
        if not page.has_more:
            break
        offset += len(page.documents)
    assert seen == [d.mk_id for d in orders]
    assert partners == {d.partner_mk_id for d in orders}
    newest = max(d.last_change for d in orders)
    later = await client.search_documents("sales_order", last_change_from=newest)
    assert [d.mk_id for d in later.documents] == \
        [d.mk_id for d in orders if d.last_change >= newest]


async def test_searches_never_overlap_and_companies_never_mix(env: Env) -> None:
    """1. two tenants' clients of company A and one of company B search at once
    (9 searches), each search held 20 ms by the simulator
    Result: the simulator saw no overlapping search of one company; every client
    found only its own company's partners (B's key opens only B)."""
    a1, a2, b = env.client(), env.client(), env.client(B)
    a_ids = set(env.sim.companies[A.company_id].partners)
    b_ids = set(env.sim.companies[B.company_id].partners)

    async def discover(client: MetakockaClient) -> set[str]:
        found: set[str] = set()
        for doc_type in ("sales_order", "complaint"):
            page = await client.search_documents(doc_type)
            found.update(page.partner_ids)
        for partner in await client.find_partners(name="a"):
            found.add(partner.mk_id)
        return found

    found_a1, found_a2, found_b = await asyncio.gather(discover(a1), discover(a2), discover(b))
    assert env.sim.search_overlaps == 0
    assert env.sim.max_concurrent_searches == 1
    assert found_a1 and found_a1 <= a_ids
    assert found_a2 <= a_ids
    assert found_b and found_b <= b_ids
