"""The HubSpot simulator over real sockets: auth, listing and paging, get and batch reads,
search (filters, sort, limits, the 10,000 cap, lag), writes, companies, v4
associations, notes, merges and the seeded data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import phonenumbers
import pytest

from crmsync.sim.hubspot import HubSpotSim, HubSpotSimConfig, run_hubspot_simulator
from crmsync.sim.quo.testing import wait_until

KEY = "hubspot-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PEOPLE = 120
CONTACTS = "/crm/v3/objects/contacts"


@pytest.fixture
async def hubspot() -> AsyncIterator[tuple[HubSpotSim, str]]:
    config = HubSpotSimConfig(people=PEOPLE, search_per_second=1000)
    async with run_hubspot_simulator(config=config) as pair:
        yield pair


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, url: str,
               body: Any = None) -> tuple[int, Any]:
    async with http.request(method, url, json=body) as resp:
        return resp.status, (None if resp.status == 204 else await resp.json())


async def search(http: aiohttp.ClientSession, base: str, body: dict[str, Any],
                 obj: str = "contacts") -> tuple[int, Any]:
    return await call(http, "POST", f"{base}/crm/v3/objects/{obj}/search", body)


def eq(name: str, value: str, op: str = "EQ") -> dict[str, Any]:
    return {"filterGroups": [{"filters": [{"propertyName": name, "operator": op,
                                           "value": value}]}]}


async def test_auth_account_and_error_shape(hubspot: tuple[HubSpotSim, str]) -> None:
    _, base = hubspot
    async with aiohttp.ClientSession() as anonymous:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            async with anonymous.get(f"{base}{CONTACTS}", headers=headers) as resp:
                body = await resp.json()
                assert resp.status == 401
                assert body["category"] == "INVALID_AUTHENTICATION"
                assert body["status"] == "error" and body["correlationId"]
        async with anonymous.get(f"{base}/account-info/v3/details", headers=AUTH) as resp:
            assert resp.status == 200
            assert (await resp.json())["portalId"] == 62515
        async with anonymous.get(f"{base}/crm/v3/nowhere", headers=AUTH) as resp:
            assert resp.status == 404
            assert (await resp.json())["status"] == "error"


async def test_list_pages_with_after_only_asked_properties(
    hubspot: tuple[HubSpotSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = hubspot
    seen: list[str] = []
    url: str | None = (f"{base}{CONTACTS}?limit=100&properties=firstname,phone"
                       "&associations=companies")
    while url is not None:
        status, body = await call(http, "GET", url)
        assert status == 200
        for result in body["results"]:
            assert set(result["properties"]) == {
                "firstname", "phone", "createdate", "lastmodifieddate", "hs_object_id"}
            assert result["archived"] is False
            assert result["createdAt"].endswith("Z") and "." in result["createdAt"]
        seen += [r["id"] for r in body["results"]]
        url = body.get("paging", {}).get("next", {}).get("link")
    assert seen == sim.record_ids()  # every live contact, once, in id order
    assert not set(seen) & set(sim.facts.archived)
    status, body = await call(http, "GET", f"{base}{CONTACTS}?limit=101")
    assert status == 400 and body["category"] == "VALIDATION_ERROR"
    status, body = await call(http, "GET", f"{base}{CONTACTS}?archived=true&limit=100")
    assert [r["id"] for r in body["results"]] == sim.facts.archived


async def test_list_shows_primary_company_first_twice(
    hubspot: tuple[HubSpotSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = hubspot
    two = sim.facts.two_companies[0]
    contact = sim.contact(two)
    status, body = await call(http, "GET", f"{base}{CONTACTS}/{two}?associations=companies")
    assert status == 200
    items = body["associations"]["companies"]["results"]
    primary, other = contact.companies_primary_first()
    assert contact.linked("companies") == [other, primary]  # primary associated second
    assert items == [
        {"id": str(primary), "type": "contact_to_company"},
        {"id": str(primary), "type": "contact_to_company_unlabeled"},
        {"id": str(other), "type": "contact_to_company_unlabeled"},
    ]
    plain = next(i for i in sim.record_ids() if not sim.contact(i).linked("companies"))
    status, body = await call(http, "GET", f"{base}{CONTACTS}/{plain}?associations=companies")
    assert "associations" not in body


async def test_get_one_404_for_unknown_and_archived(
    hubspot: tuple[HubSpotSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = hubspot
    for missing in ("999999", sim.facts.archived[0]):
        status, body = await call(http, "GET", f"{base}{CONTACTS}/{missing}")
        assert status == 404 and body["category"] == "OBJECT_NOT_FOUND"
    some = sim.record_ids()[3]
    status, body = await call(http, "GET", f"{base}{CONTACTS}/{some}?properties=email,nope")
    assert status == 200
    assert body["properties"]["email"] == sim.contact(some).properties["email"]
    assert "nope" not in body["properties"]


async def test_batch_read_limits_and_207(
    hubspot: tuple[HubSpotSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = hubspot
    ids = sim.record_ids()[:3]
    wanted = [{"id": i} for i in [*ids, "424242", sim.facts.archived[0]]]
    status, body = await call(http, "POST", f"{base}{CONTACTS}/batch/read",
                              {"properties": ["jobtitle"], "inputs": wanted})
    assert status == 207
    assert [r["id"] for r in body["results"]] == ids
    assert body["errors"][0]["context"]["ids"] == ["424242", sim.facts.archived[0]]
    status, body = await call(http, "POST", f"{base}{CONTACTS}/batch/read",
                              {"properties": [], "inputs": [{"id": ids[0]}]})
    assert status == 200 and body["status"] == "COMPLETE"
    status, _ = await call(http, "POST", f"{base}{CONTACTS}/batch/read",
                           {"inputs": [{"id": str(n)} for n in range(101)]})
    assert status == 400


async def test_search_filters_operators_and_total(
    hubspot: tuple[HubSpotSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = hubspot
    some = sim.contact(sim.record_ids()[5])
    email = some.properties["email"]
    status, body = await search(http, base, {**eq("email", email.upper()),
                                             "properties": ["email"]})
    assert status == 200 and body["total"] == 1
    assert body["results"][0]["id"] == str(some.id)
    domain = email.split("@")[1]
    status, body = await search(http, base, eq("email", f"*@{domain}", "CONTAINS_TOKEN"))
    assert body["total"] == sum(
        1 for i in sim.record_ids() if sim.contact(i).properties["email"].endswith(domain))
    with_title = [i for i in sim.record_ids() if sim.contact(i).properties.get("jobtitle")]
    status, body = await search(http, base, {"filterGroups": [{"filters": [
        {"propertyName": "jobtitle", "operator": "HAS_PROPERTY"}]}], "limit": 200})
    assert body["total"] == len(with_title)
    assert sorted(r["id"] for r in body["results"]) == sorted(with_title)
    ids = sim.record_ids()[:4]
    status, body = await search(http, base, {"filterGroups": [
        {"filters": [{"propertyName": "hs_object_id", "operator": "IN", "values": ids[:2]}]},
        {"filters": [{"propertyName": "hs_object_id", "operator": "EQ", "value": ids[3]}]},
    ]})
    assert [r["id"] for r in body["results"]] == [ids[0], ids[1], ids[3]]  # OR of groups
    compact = sim.add_contact(email="compact@example.si", phone="+38641987654")
    spaced = sim.add_contact(email="spaced@example.si", phone="+386 41 987 654")
    status, body = await search(http, base, eq("phone", "*41987654", "CONTAINS_TOKEN"))
    assert [r["id"] for r in body["results"]] == [compact]  # phones are kept as typed
    status, body = await search(http, base, {"filterGroups": [{"filters": [{
        "propertyName": "phone", "operator": "IN",
        "values": ["+38641987654", "+386 41 987 654"]}]}]})
    assert [r["id"] for r in body["results"]] == [compact, spaced]
    status, body = await search(http, base, {"query": "zz-nobody"})
    assert (status, body["total"]) == (200, 0)
    first = some.properties.get("firstname") or some.properties["email"]
    status, body = await search(http, base, {"query": first[:3].lower(), "limit": 200})
    assert str(some.id) in [r["id"] for r in body["results"]]  # a token prefix matches
    cutoff = sim.contact(ids[2]).created_ms
    status, body = await search(http, base, {"filterGroups": [{"filters": [
        {"propertyName": "createdate", "operator": "GTE", "value": str(cutoff)},
        {"propertyName": "createdate", "operator": "LTE", "value": str(cutoff)}]}]})
    assert str(ids[2]) in [r["id"] for r in body["results"]]
    assert all(sim.contact(r["id"]).created_ms == cutoff for r in body["results"])


@pytest.mark.parametrize(("body", "fragment"), [
    ({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]}]
      * 6}, "filter groups"),
    ({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]
                        * 11}]}, "in a group"),
    ({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "HAS_PROPERTY"}]
                        * 9}] * 3}, "Too many filters (27)"),
    ({"sorts": [{"propertyName": "createdate"}, {"propertyName": "hs_object_id"}]}, "one sort"),
    ({"sorts": [{"propertyName": "firstname", "direction": "ASCENDING"}]}, "not supported"),
    ({"limit": 201}, "limit"),
    ({"after": "9900", "limit": 101}, "10000"),
    ({"filterGroups": [{"filters": [{"propertyName": "nope", "operator": "EQ",
                                     "value": "x"}]}]}, "does not exist"),
    ({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE",
                                     "value": "x"}]}]}, "operator"),
    ({"filterGroups": [{"filters": [{"propertyName": "createdate", "operator": "GT",
                                     "value": "yesterday"}]}]}, "epoch milliseconds"),
    ({"sort": []}, "Unrecognized"),
])
async def test_search_rejects_what_hubspot_rejects(
    hubspot: tuple[HubSpotSim, str], http: aiohttp.ClientSession, body: dict[str, Any],
    fragment: str,
) -> None:
    _, base = hubspot
    status, answer = await search(http, base, body)
    assert status == 400, answer
    assert answer["category"] == "VALIDATION_ERROR"
    assert fragment in answer["message"]


async def test_search_sort_ties_and_paging_match_newest_first(
    hubspot: tuple[HubSpotSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = hubspot
    assert sim.facts.tied and sim.facts.backdated  # ties and out-of-order create dates
    seen: list[str] = []
    after: str | None = "0"
    while after is not None:
        status, body = await search(http, base, {
            "sorts": [{"propertyName": "createdate", "direction": "DESCENDING"}],
            "limit": 7, "after": after})
        assert status == 200 and body["total"] == len(sim.record_ids())
        assert "associations" not in body["results"][0]
        seen += [r["id"] for r in body["results"]]
        after = body.get("paging", {}).get("next", {}).get("after")
    assert seen == sim.newest_first()
    assert seen != list(reversed(sim.record_ids()))  # backdated: not simply id order


async def test_search_caps_at_ten_thousand(http: aiohttp.ClientSession) -> None:
    config = HubSpotSimConfig(search_per_second=1000)
    async with run_hubspot_simulator(config=config) as (sim, base):
        sim.bulk_add_contacts(10_050, created_at_ms=1_700_000_000_000)
        status, body = await search(http, base, {"limit": 200, "after": "9800"})
        assert status == 200 and body["total"] == 10_050
        assert body["paging"]["next"]["after"] == "10000"
        status, body = await search(http, base, {"limit": 1, "after": "10000"})
        assert status == 400
        # All share one createdate: a window on createdate cannot move; hs_object_id can.
        last = sim.record_ids()[9_999]
        status, body = await search(http, base, {
            "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "GT",
                                           "value": last}]}],
            "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
            "limit": 200})
        assert body["total"] == 50
        assert [r["id"] for r in body["results"]] == sim.record_ids()[10_000:]


async def test_search_lags_behind_writes(http: aiohttp.ClientSession) -> None:
    config = HubSpotSimConfig(people=5, search_lag=0.3, search_per_second=1000)
    async with run_hubspot_simulator(config=config) as (sim, base):
        old = sim.record_ids()[0]
        title_before = sim.contact(old).properties.get("jobtitle")
        new = sim.add_contact(firstname="Late", email="late@example.com")
        sim.update_contact(old, jobtitle="Chief Lag Officer")
        status, body = await search(http, base, eq("email", "late@example.com"))
        assert (status, body["total"]) == (200, 0)  # indexed later
        status, body = await search(http, base, {**eq("hs_object_id", old),
                                                 "properties": ["jobtitle"]})
        assert body["results"][0]["properties"]["jobtitle"] == title_before  # stale
        status, body = await call(http, "GET", f"{base}{CONTACTS}/{new}")
        assert status == 200  # reads by id are consistent at once

        async def visible() -> bool:
            _, found = await search(http, base, eq("email", "late@example.com"))
            return bool(found["total"] == 1)

        await wait_until(visible, within=3.0, message="the new contact in search")
        _, body = await search(http, base, {**eq("hs_object_id", old),
                                            "properties": ["jobtitle"]})
        assert body["results"][0]["properties"]["jobtitle"] == "Chief Lag Officer"


async def test_create_conflict_patch_clears_delete_archives(
    hubspot: tuple[HubSpotSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = hubspot
    status, made = await call(http, "POST", f"{base}{CONTACTS}", {"properties": {
        "firstname": "Ada", "email": "ada@example.com", "phone": "+386 40 555 123",
        "jobtitle": "CTO"}})
    assert status == 201 and made["properties"]["jobtitle"] == "CTO"
    status, body = await call(http, "POST", f"{base}{CONTACTS}",
                              {"properties": {"email": "ADA@example.com"}})
    assert status == 409 and body["category"] == "CONFLICT"
    assert body["message"] == f"Contact already exists. Existing ID: {made['id']}"
    status, body = await call(http, "POST", f"{base}{CONTACTS}", {"properties": {
        "email": "not-an-email", "shoe_size": "44", "hs_object_id": "1"}})
    assert status == 400
    assert {e["code"] for e in body["errors"]} == {
        "INVALID_EMAIL", "PROPERTY_DOESNT_EXIST", "READ_ONLY_VALUE"}
    status, body = await call(http, "PATCH", f"{base}{CONTACTS}/{made['id']}",
                              {"properties": {"jobtitle": "", "lastname": "Lovelace"}})
    assert status == 200
    assert body["properties"]["jobtitle"] is None
    assert sim.contact(made["id"]).properties == {
        "firstname": "Ada", "lastname": "Lovelace", "email": "ada@example.com",
        "phone": "+386 40 555 123"}
    status, _ = await call(http, "DELETE", f"{base}{CONTACTS}/{made['id']}")
    assert status == 204 and sim.contact(made["id"]).archived
    status, _ = await call(http, "GET", f"{base}{CONTACTS}/{made['id']}")
    assert status == 404
    status, _ = await call(http, "PATCH", f"{base}{CONTACTS}/{made['id']}",
                           {"properties": {"jobtitle": "x"}})
    assert status == 404
    status, _ = await call(http, "POST", f"{base}{CONTACTS}",
                           {"properties": {"email": "ada@example.com"}})
    assert status == 201  # the archived contact's email is free again


async def test_companies_and_v4_associations(
    hubspot: tuple[HubSpotSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = hubspot
    status, company = await call(http, "POST", f"{base}/crm/v3/objects/companies",
                                 {"properties": {"name": "Quo Labs"}})
    assert status == 201
    status, body = await search(http, base, eq("name", "quo labs"), "companies")
    assert [r["id"] for r in body["results"]] == [company["id"]]
    contact = next(i for i in sim.record_ids() if not sim.contact(i).linked("companies"))
    v4 = f"{base}/crm/v4/objects/contacts/{contact}/associations"
    status, body = await call(http, "PUT", f"{v4}/default/companies/{company['id']}")
    assert status == 200
    assert body["results"][0]["associationSpec"]["associationTypeId"] == 279
    status, body = await call(http, "POST", f"{base}/crm/v4/associations/contacts/companies"
                              "/batch/read", {"inputs": [{"id": contact}, {"id": "999999"}]})
    assert status == 207
    assert body["results"] == [{"from": {"id": contact}, "to": [{
        "toObjectId": int(company["id"]), "associationTypes": [
            {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": "Primary"},
            {"category": "HUBSPOT_DEFINED", "typeId": 279, "label": None}]}]}]
    assert body["errors"][0]["subCategory"] == "crm.associations.NO_ASSOCIATIONS_FOUND"
    status, body = await call(http, "POST", f"{base}/crm/v3/objects/companies/batch/read",
                              {"properties": ["name"], "inputs": [{"id": company["id"]}]})
    assert body["results"][0]["properties"]["name"] == "Quo Labs"
    status, _ = await call(http, "DELETE", f"{v4}/companies/{company['id']}")
    assert status == 204 and not sim.contact(contact).linked("companies")
    status, _ = await call(http, "PUT", f"{v4}/default/companies/123")
    assert status == 404


async def test_notes_need_association_202_and_a_short_body(
    hubspot: tuple[HubSpotSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = hubspot
    contact = sim.record_ids()[0]
    notes = f"{base}/crm/v3/objects/notes"

    def to(type_id: int, target: str = contact) -> list[dict[str, Any]]:
        return [{"to": {"id": target}, "types": [
            {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}]

    props = {"hs_timestamp": "2025-01-01T10:00:00Z", "hs_note_body": "<p>Called</p>"}
    status, note = await call(http, "POST", notes, {"properties": props,
                                                   "associations": to(202)})
    assert status == 201 and note["properties"]["hs_note_body"] == "<p>Called</p>"
    assert note["properties"]["hs_timestamp"] == "2025-01-01T10:00:00.000Z"
    for bad in ({"properties": props, "associations": to(201)},  # contact -> note's id
                {"properties": props, "associations": to(202, "999999")},
                {"properties": {"hs_note_body": "x"}},
                {"properties": {**props, "hs_note_body": "x" * 65_537}}):
        status, body = await call(http, "POST", notes, bad)
        assert status == 400, body
    status, orphan = await call(http, "POST", notes, {"properties": props})
    assert status == 201  # allowed, but attached to nobody
    status, body = await call(http, "GET", f"{base}/crm/v4/objects/contacts/{contact}"
                              "/associations/notes?limit=500")
    assert body["results"] == [{"toObjectId": int(note["id"]), "associationTypes": [
        {"category": "HUBSPOT_DEFINED", "typeId": 201, "label": None}]}]
    assert [n["id"] for n in sim.notes_of(contact)] == [note["id"]]
    status, body = await call(http, "POST", f"{notes}/batch/read", {
        "properties": ["hs_note_body"], "inputs": [{"id": note["id"]}, {"id": orphan["id"]}]})
    assert status == 200 and len(body["results"]) == 2
    status, _ = await call(http, "DELETE", f"{notes}/{note['id']}")
    assert status == 204 and sim.notes_of(contact) == []


async def test_merged_contact_reads_as_the_primary(
    hubspot: tuple[HubSpotSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = hubspot
    primary = sim.add_contact(firstname="Prim", email="prim@example.com")
    merged = sim.add_contact(firstname="Dup", email="dup@example.com", phone="+14155550134",
                             jobtitle="CFO")
    assert sim.merge_contacts(primary, merged) == primary
    props = sim.contact(primary).properties
    assert props["firstname"] == "Prim" and props["jobtitle"] == "CFO"
    assert props["hs_additional_emails"] == "dup@example.com"
    assert props["hs_merged_object_ids"] == merged
    status, body = await call(http, "GET", f"{base}{CONTACTS}/{merged}")
    assert status == 200 and body["id"] == primary
    assert merged not in sim.record_ids()
    status, body = await call(http, "POST", f"{base}{CONTACTS}",
                              {"properties": {"email": "dup@example.com"}})
    assert status == 409 and body["message"].endswith(primary)


async def test_seeded_contacts_are_awkward_and_deterministic() -> None:
    sim = HubSpotSim(HubSpotSimConfig(people=PEOPLE, seed=7))
    again = HubSpotSim(HubSpotSimConfig(people=PEOPLE, seed=7))
    assert [c.properties for c in sim.contacts] == [c.properties for c in again.contacts]
    facts = sim.facts
    for shape in ("email_only", "first_name_only", "no_phone", "mobile_only", "two_phones",
                  "national_with_region", "national_no_region", "mobile_duplicate",
                  "junk_phone", "normal"):
        assert facts.of(shape), shape
    for listed in (facts.archived, facts.one_company, facts.two_companies, facts.tied,
                   facts.company_text_only, facts.stale_company_text, facts.backdated,
                   facts.additional_emails, facts.unicode_names):
        assert listed
    only_email = sim.contact(facts.of("email_only")[0]).properties
    assert set(only_email) == {"email"}
    for record_id in facts.of("national_with_region"):
        props = sim.contact(record_id).properties
        assert not props["phone"].startswith("+") and props["hs_country_region_code"]
        assert len(sim.person_phones(record_id)) == 1
    for record_id in facts.of("national_no_region") + facts.of("junk_phone"):
        assert sim.person_phones(record_id) == []
    for record_id in facts.of("mobile_duplicate"):
        props = sim.contact(record_id).properties
        assert props["phone"] != props["mobilephone"]
        assert len(sim.person_phones(record_id)) == 1
    for record_id in facts.of("two_phones"):
        assert len(sim.person_phones(record_id)) == 2
    for e164 in (p for i in sim.record_ids() for p in sim.person_phones(i)):
        assert phonenumbers.is_valid_number(phonenumbers.parse(e164))
    for group in facts.tied:
        assert len({sim.contact(i).created_ms for i in group}) == 1
    for record_id in facts.company_text_only:
        contact = sim.contact(record_id)
        assert contact.properties["company"] and not contact.linked("companies")
