"""The Metakocka simulator over real sockets: auth in the body, the `opr_code`
envelope, the partner endpoints' quirks, seeding, several companies, the test hooks,
the `/_sim/` routes and the CLI banner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sim.metakocka_support import (
    COMPANY,
    KEY,
    OTHER_COMPANY,
    OTHER_KEY,
    as_list,
    call,
    new_partner,
)

from crmsync.sim.metakocka import (
    CompanyConfig,
    MetakockaSim,
    MetakockaSimConfig,
    run_metakocka_simulator,
    serve_metakocka_simulator_forever,
)

Running = tuple[MetakockaSim, str, aiohttp.ClientSession]


def config(*, collapse: float = 0.5, seed: int = 7) -> MetakockaSimConfig:
    return MetakockaSimConfig(
        companies=[
            CompanyConfig(COMPANY, KEY, partners=30, documents=60),
            CompanyConfig(OTHER_COMPANY, OTHER_KEY, partners=12, documents=5),
        ],
        seed=seed,
        one_element_as_object=collapse,
    )


@pytest.fixture
async def mk() -> AsyncIterator[Running]:
    async with (
        run_metakocka_simulator(config=config()) as (sim, base),
        aiohttp.ClientSession() as http,
    ):
        yield sim, base, http


# -- transport, auth, envelope -----------------------------------------------------


async def test_base_url_ends_in_the_rest_eshop_path(mk: Running) -> None:
    _, base, _ = mk
    assert base.startswith("http://127.0.0.1:")
    assert base.endswith("/rest/eshop/v1")


@pytest.mark.parametrize(
    ("company", "key"),
    [(COMPANY, "wrong"), ("999", KEY), (OTHER_COMPANY, KEY), (COMPANY, "")],
)
async def test_bad_credentials_in_the_body_are_opr_code_3(
    mk: Running, company: str, key: str
) -> None:
    sim, base, http = mk
    answer = await call(http, base, "get_partner", {"partner_name": "a"},
                        company=company, key=key)
    assert answer == {"opr_code": "3", "opr_desc": "Invalid value for secret_key and company_id"}
    assert sim.stats.count("get_partner", company_id=company, outcome="3") == 1


async def test_credentials_in_a_header_do_not_count(mk: Running) -> None:
    _, base, http = mk
    headers = {"secret_key": KEY, "company_id": COMPANY}
    async with http.post(f"{base}/get_partner", json={"partner_name": "a"},
                         headers=headers) as response:
        assert (await response.json())["opr_code"] == "3"


@pytest.mark.parametrize("path", ["json/get_partner", "json/add_partner", "get_partners",
                                  "../get_partner"])
async def test_the_wrong_endpoint_family_is_an_html_404(mk: Running, path: str) -> None:
    sim, base, http = mk
    body = {"secret_key": KEY, "company_id": COMPANY, "partner_name": "a"}
    async with http.post(f"{base}/{path}", json=body) as response:
        assert response.status == 404
        assert response.content_type == "text/html"
        assert "<html>" in await response.text()
    assert sim.stats.count("<unmatched>", outcome="http 404") == 1


async def test_only_post_is_served(mk: Running) -> None:
    _, base, http = mk
    async with http.get(f"{base}/get_partner") as response:
        assert response.status == 405
        assert response.content_type == "text/html"


async def test_a_body_that_is_not_a_json_object_is_opr_code_2(mk: Running) -> None:
    _, base, http = mk
    for data in (b"not json", b"[1, 2]"):
        async with http.post(f"{base}/get_partner", data=data) as response:
            assert response.status == 200
            assert (await response.json())["opr_code"] == "2"


# -- get_partner ---------------------------------------------------------------------


async def test_get_partner_by_id_answers_strings_only(mk: Running) -> None:
    sim, base, http = mk
    mk_id = sim.facts[COMPANY].business[0]
    answer = await call(http, base, "get_partner", {"partner_id": mk_id})
    assert answer["opr_code"] == "0"
    assert answer["partner_list_count"] == "1"
    assert isinstance(answer["opr_time_ms"], str)
    [partner] = as_list(answer["partner_list"])
    assert partner["mk_id"] == mk_id
    assert partner["business_entity"] == "true"
    assert partner["tax_id_number"] == sim.companies[COMPANY].partners[mk_id].tax_id_number

    def scalars(value: object) -> list[object]:
        if isinstance(value, dict):
            return [s for v in value.values() for s in scalars(v)]
        if isinstance(value, list):
            return [s for v in value for s in scalars(v)]
        return [value]

    assert all(isinstance(s, str) for s in scalars(answer))
    [address] = as_list(partner["partner_delivery_address_list"])
    assert address["address_type"] == "Račun" and "city" in address and "place" not in address
    [contact] = as_list(partner["partner_contact_list"])
    assert contact["mk_address_id"] == address["mk_id"]


async def test_no_match_is_opr_code_2_not_an_empty_list(mk: Running) -> None:
    _, base, http = mk
    for body in ({"partner_id": "1"}, {"partner_email": "nobody@nowhere.si"},
                 {"partner_name": "zzzz-no-such"}):
        answer = await call(http, base, "get_partner", body)
        assert answer == {"opr_code": "2", "opr_desc": "No partner with such properties."}


async def test_get_partner_needs_a_filter(mk: Running) -> None:
    _, base, http = mk
    answer = await call(http, base, "get_partner", {"partner_name": "  "})
    assert answer["opr_code"] == "2"


async def test_name_matches_by_substring_ignoring_case(mk: Running) -> None:
    sim, base, http = mk
    private, business = sim.facts[COMPANY].name_inside_other
    answer = await call(http, base, "get_partner", {"partner_name": "ana NOVAK"})
    found = [p["mk_id"] for p in as_list(answer["partner_list"])]
    assert found == [private, business]  # oldest first; the client must compare exactly
    twins = sim.facts[COMPANY].same_name
    name = sim.companies[COMPANY].partners[twins[0]].customer
    answer = await call(http, base, "get_partner", {"partner_name": name})
    assert set(twins) <= {p["mk_id"] for p in as_list(answer["partner_list"])}


async def test_email_phone_and_tax_number_match_whole_values(mk: Running) -> None:
    sim, base, http = mk
    partners = sim.companies[COMPANY].partners
    partner = next(partners[i] for i in sim.facts[COMPANY].business if partners[i].contacts)
    contact = partner.contacts[0]
    for body in ({"partner_email": contact.email.upper()},
                 {"partner_phone_number": contact.gsm},
                 {"partner_tax_number": partner.tax_id_number}):
        answer = await call(http, base, "get_partner", body)
        assert partner.mk_id in [p["mk_id"] for p in as_list(answer["partner_list"])]
    answer = await call(http, base, "get_partner", {"partner_email": contact.email[1:]})
    assert answer["opr_code"] == "2"


async def test_one_element_lists_come_back_in_both_shapes() -> None:
    """Over many single-partner answers, some lists are objects and some are lists."""
    async with (
        run_metakocka_simulator(config=config(collapse=0.5)) as (sim, base),
        aiohttp.ClientSession() as http,
    ):
        shapes = set()
        for mk_id in sim.facts[COMPANY].private[:8]:
            answer = await call(http, base, "get_partner", {"partner_id": mk_id})
            shapes.add(type(answer["partner_list"]).__name__)
        assert shapes == {"dict", "list"}
    async with (
        run_metakocka_simulator(config=config(collapse=1.0)) as (sim, base),
        aiohttp.ClientSession() as http,
    ):
        mk_id = sim.facts[COMPANY].private[0]
        answer = await call(http, base, "get_partner", {"partner_id": mk_id})
        assert isinstance(answer["partner_list"], dict)
        assert isinstance(answer["partner_list"]["partner_contact_list"], dict)


# -- add_partner / update_partner -------------------------------------------------------


async def test_add_partner_answers_ids_without_an_opr_code(mk: Running) -> None:
    sim, base, http = mk
    delivery = {"address_type": "Dobava", "street": "Tehnološki park 24",
                "post_number": "1000", "city": "Ljubljana", "country": "Slovenija"}
    answer = await call(http, base, "add_partner",
                        new_partner(partner_delivery_address=delivery))
    assert "opr_code" not in answer
    assert set(answer) == {"mk_id", "mk_contact_id", "mk_address_id_list"}
    addresses = as_list(answer["mk_address_id_list"])
    assert [a["street"] for a in addresses] == ["Test, 4", "Tehnološki park 24"]
    partner = sim.companies[COMPANY].partners[answer["mk_id"]]
    assert [a.address_type for a in partner.addresses] == ["Račun", "Dobava"]
    assert partner.contacts[0].mk_id == answer["mk_contact_id"]
    assert partner.contacts[0].mk_address_id == addresses[0]["mk_id"]
    assert partner.count_code  # assigned, though add_partner does not return it
    assert sim.stats.count("add_partner", company_id=COMPANY, outcome="0") == 1


async def test_add_partner_is_not_idempotent(mk: Running) -> None:
    sim, base, http = mk
    first = await call(http, base, "add_partner", new_partner("Dvojnik d.o.o."))
    second = await call(http, base, "add_partner", new_partner("Dvojnik d.o.o."))
    assert first["mk_id"] != second["mk_id"]
    same = [p for p in sim.companies[COMPANY].partners.values() if p.customer == "Dvojnik d.o.o."]
    assert len(same) == 2


@pytest.mark.parametrize(
    ("body", "desc"),
    [
        ({}, "Partner data are missing"),
        (new_partner(street=""), "Partner must declare street, post number, place and country."),
        (new_partner(customer="x" * 101), "Field customer is too long (max 100 characters)."),
        (new_partner(partner_contact=[{"name": "A"}]), "Field partner_contact must be an object."),
        (new_partner(business_entity="yes"), "Field business_entity must be true or false."),
    ],
)
async def test_add_partner_validation_errors_are_opr_code_2(
    mk: Running, body: dict[str, object], desc: str
) -> None:
    sim, base, http = mk
    before = len(sim.companies[COMPANY].partners)
    assert await call(http, base, "add_partner", body) == {"opr_code": "2", "opr_desc": desc}
    assert len(sim.companies[COMPANY].partners) == before


async def test_update_partner_changes_only_what_is_sent_and_answers_the_partner(
    mk: Running,
) -> None:
    sim, base, http = mk
    added = await call(http, base, "add_partner", new_partner())
    mk_id = added["mk_id"]
    contact_id = added["mk_contact_id"]
    answer = await call(http, base, "update_partner", {"partner": {
        "mk_id": mk_id, "street": "Test 1234", "post_number": "2000",
        "partner_contact_list": [{"mk_id": contact_id, "email": "novo@test.com"}],
    }})
    assert answer["opr_code"] == "0" and answer["partner_list_count"] == "1"
    [partner] = as_list(answer["partner_list"])
    assert partner["customer"] == "Test Uporabnik"
    [main] = as_list(partner["partner_delivery_address_list"])
    assert (main["street"], main["post_number"], main["city"]) == ("Test 1234", "2000", "Test")
    [contact] = as_list(partner["partner_contact_list"])
    assert (contact["email"], contact["gsm"]) == ("novo@test.com", "054367865")
    by_count_code = sim.companies[COMPANY].partners[mk_id].count_code
    answer = await call(http, base, "update_partner",
                        {"partner": {"count_code": by_count_code, "customer": "Preimenovan"}})
    assert as_list(answer["partner_list"])[0]["customer"] == "Preimenovan"


async def test_update_partner_adding_a_contact_is_not_idempotent(mk: Running) -> None:
    sim, base, http = mk
    added = await call(http, base, "add_partner", new_partner())
    address_id = as_list(added["mk_address_id_list"])[0]["mk_id"]
    body = {"partner": {"mk_id": added["mk_id"], "partner_contact_list": [
        {"mk_address_id": address_id, "name": "Druga Oseba", "email": "druga@test.com"},
    ]}}
    await call(http, base, "update_partner", body)
    await call(http, base, "update_partner", body)
    names = [c.name for c in sim.companies[COMPANY].partners[added["mk_id"]].contacts]
    assert names == ["Test Kontakt", "Druga Oseba", "Druga Oseba"]


async def test_update_partner_checks_everything_before_applying(mk: Running) -> None:
    sim, base, http = mk
    added = await call(http, base, "add_partner", new_partner())
    bad = {"partner": {"mk_id": added["mk_id"], "customer": "Ne sme",
                       "partner_contact_list": [{"name": "Brez naslova"}]}}
    answer = await call(http, base, "update_partner", bad)
    assert answer == {"opr_code": "2", "opr_desc": "New contact must have mk_address_id."}
    assert sim.companies[COMPANY].partners[added["mk_id"]].customer == "Test Uporabnik"
    missing = await call(http, base, "update_partner",
                         {"partner": {"mk_id": "228999999999", "customer": "X"}})
    assert missing == {"opr_code": "2", "opr_desc": "No partner with such properties."}


# -- seeding, companies, hooks -------------------------------------------------------------


def test_seeding_is_deterministic_per_seed_and_company() -> None:
    def snapshot(sim: MetakockaSim) -> list[tuple[str, str, str]]:
        return [(p.mk_id, p.customer, p.contacts[0].email if p.contacts else "")
                for p in sim.companies[COMPANY].partners.values()]

    first, again = MetakockaSim(config(seed=3)), MetakockaSim(config(seed=3))
    assert snapshot(first) == snapshot(again)
    assert [d.last_change for d in first.companies[COMPANY].documents] == \
        [d.last_change for d in again.companies[COMPANY].documents]
    assert snapshot(MetakockaSim(config(seed=4))) != snapshot(first)
    alone = MetakockaSim(MetakockaSimConfig(
        companies=[CompanyConfig(COMPANY, KEY, partners=30, documents=60)], seed=3))
    assert snapshot(alone) == snapshot(first)  # other companies do not shift the data
    facts = first.facts[COMPANY]
    assert len(first.companies[COMPANY].partners) == 30
    assert len(first.companies[COMPANY].documents) == 60
    for case in (facts.same_name, facts.name_inside_other, facts.without_contacts,
                 facts.without_email, facts.two_contacts, facts.foreign):
        assert case
    assert set(facts.on_documents) | set(facts.without_documents) == \
        set(first.companies[COMPANY].partners)


async def test_companies_are_isolated(mk: Running) -> None:
    sim, base, http = mk
    theirs = sim.facts[OTHER_COMPANY].private[0]
    assert theirs not in sim.companies[COMPANY].partners
    answer = await call(http, base, "get_partner", {"partner_id": theirs})
    assert answer["opr_code"] == "2"
    found = await call(http, base, "get_partner", {"partner_id": theirs},
                       company=OTHER_COMPANY, key=OTHER_KEY)
    assert as_list(found["partner_list"])[0]["mk_id"] == theirs
    assert sim.stats.count("get_partner", company_id=COMPANY) == 1
    assert sim.stats.count("get_partner", company_id=OTHER_COMPANY) == 1


def test_duplicate_company_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        MetakockaSim(MetakockaSimConfig(companies=[CompanyConfig("1", "a"),
                                                   CompanyConfig("1", "b")]))


async def test_an_edit_in_the_app_is_what_the_api_reads_next(mk: Running) -> None:
    sim, base, http = mk
    mk_id = sim.facts[COMPANY].private[0]
    sim.edit_partner(COMPANY, mk_id, customer="Novo Ime", email="novo@ime.si", city="Bled")
    answer = await call(http, base, "get_partner", {"partner_email": "novo@ime.si"})
    [partner] = as_list(answer["partner_list"])
    assert (partner["mk_id"], partner["customer"]) == (mk_id, "Novo Ime")
    assert as_list(partner["partner_delivery_address_list"])[0]["city"] == "Bled"
    with pytest.raises(ValueError, match="unknown"):
        sim.edit_partner(COMPANY, mk_id, nickname="x")
    assert sim.stats.count("update_partner") == 0  # app edits are not API calls


async def test_admin_routes_list_edit_add_and_count(mk: Running) -> None:
    sim, base, http = mk
    root = base.removesuffix("/rest/eshop/v1")
    mk_id = sim.facts[COMPANY].business[0]
    async with http.patch(f"{root}/_sim/companies/{COMPANY}/partners/{mk_id}",
                          json={"gsm": "041000111", "customer": "Uredil Uporabnik"}) as r:
        assert r.status == 200
        assert (await r.json())["customer"] == "Uredil Uporabnik"
    assert sim.companies[COMPANY].partners[mk_id].contacts[0].gsm == "041000111"
    async with http.patch(f"{root}/_sim/companies/{COMPANY}/partners/{mk_id}",
                          json={"bogus": 1}) as r:
        assert r.status == 400
    async with http.post(f"{root}/_sim/companies/{COMPANY}/partners",
                         json={"customer": "Iz Aplikacije", "email": "app@mk.si"}) as r:
        assert r.status == 201
        new_id = (await r.json())["mk_id"]
    async with http.post(f"{root}/_sim/companies/{COMPANY}/documents",
                         json={"partner_mk_id": new_id}) as r:
        assert r.status == 201
    assert sim.companies[COMPANY].documents[-1].partner_mk_id == new_id
    async with http.get(f"{root}/_sim/companies/{COMPANY}/partners") as r:
        listed = (await r.json())["partners"]
    assert listed[-1]["mk_id"] == new_id and len(listed) == 31
    await call(http, base, "get_partner", {"partner_id": new_id})
    async with http.get(f"{root}/_sim/stats") as r:
        stats = await r.json()
    assert stats["calls"] == {"get_partner": {COMPANY: {"0": 1}}}
    assert stats["companies"][COMPANY]["partners"] == 31
    assert KEY not in str(stats)
    async with http.get(f"{root}/_sim/companies/nope/partners") as r:
        assert r.status == 404


async def test_serve_forever_prints_the_base_url_and_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = asyncio.create_task(serve_metakocka_simulator_forever(config=config()))
    output = ""
    async with asyncio.timeout(5):  # poll the captured output with a deadline
        while "admin routes under" not in output:
            await asyncio.sleep(0.01)
            output += capsys.readouterr().out
    base = output.split("Metakocka simulator: ", 1)[1].split()[0]
    assert f"company_id {COMPANY}, secret_key {KEY}: 30 partners, 60 documents" in output
    async with aiohttp.ClientSession() as http:
        answer = await call(http, base, "get_partner", {"partner_name": "a"})
    assert answer["opr_code"] == "0"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
