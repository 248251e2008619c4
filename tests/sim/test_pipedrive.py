"""The Pipedrive simulator over real sockets: auth, v2 cursor paging (bound to its
parameters, newest first), filters, persons CRUD, search by phone, organizations,
users/me, v1 notes, seeding and the demo's view of it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from datetime import datetime
from typing import Any

import aiohttp
import phonenumbers
import pytest

from crmsync.sim.crms import SimOptions
from crmsync.sim.pipedrive import PipedriveSim, PipedriveSimConfig, run_pipedrive_simulator
from crmsync.sim.pipedrive.entry import ENTRY
from crmsync.sim.quo.testing import ApiResponse, SimApi, wait_until

KEY = "pipedrive-test-key"
PEOPLE = 60
UNAUTHORIZED = {"success": False, "error": "unauthorized access", "errorCode": 401,
                "error_info": "Please check developers.pipedrive.com"}


@pytest.fixture
async def pd() -> AsyncIterator[tuple[PipedriveSim, SimApi]]:
    async with (
        run_pipedrive_simulator(config=PipedriveSimConfig(people=PEOPLE, seed=7)) as (sim, url),
        aiohttp.ClientSession() as session,
    ):
        yield sim, SimApi(session, url, None, headers={"x-api-token": KEY})


async def all_pages(api: SimApi, **params: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        answer = await api.get("/api/v2/persons", params={
            **params, **({"cursor": cursor} if cursor else {})})
        assert answer.status == 200, answer.json
        assert set(answer.json) == {"success", "data", "additional_data"}
        found += answer.json["data"]
        cursor = answer.json["additional_data"]["next_cursor"]
        if cursor is None:
            return found


def error_of(answer: ApiResponse) -> str:
    assert answer.json["success"] is False and answer.json["data"] is None
    return str(answer.json["error"])


# --- auth ---------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"x-api-token": "wrong"},
                                     {"Authorization": f"Bearer {KEY}"}])
async def test_requests_without_a_valid_token_get_401(
    pd: tuple[PipedriveSim, SimApi], headers: dict[str, str]
) -> None:
    sim, api = pd
    bare = SimApi(api.session, api.base_url, None, headers=headers)
    for path in ("/api/v2/persons", "/v1/notes", "/v1/users/me"):
        answer = await bare.get(path)
        assert (answer.status, answer.json) == (401, UNAUTHORIZED)
        assert "x-ratelimit-limit" not in answer.headers
    assert sim.stats.count("GET", "/api/v2/persons", 401) == 1


async def test_unknown_routes_and_parameters(pd: tuple[PipedriveSim, SimApi]) -> None:
    _, api = pd
    answer = await api.get("/api/v2/people")
    assert answer.status == 404 and error_of(answer)
    answer = await api.get("/api/v2/persons", params={"updated_sinse": "2024-01-01T00:00:00Z"})
    assert answer.status == 400 and "updated_sinse" in error_of(answer)
    answer = await api.get("/api/v2/persons/abc")
    assert answer.status == 400 and "id" in error_of(answer)


# --- listing ------------------------------------------------------------------------


async def test_cursor_paging_lists_every_live_person_once(
    pd: tuple[PipedriveSim, SimApi],
) -> None:
    sim, api = pd
    listed = await all_pages(api, limit="7")
    ids = [p["id"] for p in listed]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert [str(i) for i in ids] == sim.record_ids()
    deleted = {int(i) for i in sim.facts.of("deleted")}
    assert deleted and not deleted & set(ids)
    assert all(p["is_deleted"] is False for p in listed)
    first = listed[0]
    assert set(first) == {"id", "name", "first_name", "last_name", "owner_id", "org_id",
                          "add_time", "update_time", "is_deleted", "visible_to", "emails",
                          "phones", "job_title", "label_ids", "custom_fields"}
    datetime.strptime(first["add_time"], "%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(("params", "named"), [
    ({"limit": "501"}, "limit"), ({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"),
    ({"sort_by": "name"}, "sort_by"), ({"sort_direction": "up"}, "sort_direction"),
    ({"updated_since": "2024-01-01"}, "updated_since"),
    ({"updated_until": "2024-01-01T00:00:00"}, "updated_until"),
    ({"ids": ",".join(str(i) for i in range(1, 102))}, "ids"), ({"ids": "1,x"}, "ids"),
    ({"cursor": "not-a-cursor"}, "cursor"),
])
async def test_bad_list_parameters_get_400_naming_them(
    pd: tuple[PipedriveSim, SimApi], params: dict[str, str], named: str
) -> None:
    _, api = pd
    answer = await api.get("/api/v2/persons", params=params)
    assert answer.status == 400 and named in error_of(answer)
    assert answer.json["error_info"]


async def test_a_cursor_is_bound_to_its_sort_and_filters(
    pd: tuple[PipedriveSim, SimApi],
) -> None:
    _, api = pd
    first = await api.get("/api/v2/persons", params={"limit": "5", "sort_by": "add_time"})
    cursor = first.json["additional_data"]["next_cursor"]
    assert cursor
    for other in ({"sort_by": "id"}, {"sort_by": "add_time", "sort_direction": "desc"},
                  {"sort_by": "add_time", "updated_since": "2020-01-01T00:00:00Z"}):
        answer = await api.get("/api/v2/persons", params={**other, "cursor": cursor})
        assert answer.status == 400 and "cursor" in error_of(answer)
    # The limit may change between pages.
    same = await api.get("/api/v2/persons",
                         params={"limit": "9", "sort_by": "add_time", "cursor": cursor})
    assert same.status == 200 and len(same.json["data"]) == 9


async def test_newest_first_paging_matches_the_sims_order(
    pd: tuple[PipedriveSim, SimApi],
) -> None:
    sim, api = pd
    listed = await all_pages(api, limit="11", sort_by="add_time", sort_direction="desc")
    assert [str(p["id"]) for p in listed] == sim.newest_first()
    # Imported persons were added with older times: add_time order is not id order.
    assert sim.newest_first() != sorted(sim.record_ids(), key=int, reverse=True)
    new_id = sim.add_person(name="Brand New", notify=False)
    assert sim.newest_first()[0] == new_id


async def test_updated_since_and_until_filter_on_update_time(
    pd: tuple[PipedriveSim, SimApi],
) -> None:
    sim, api = pd
    live = [sim.live(i) for i in sim.record_ids()]
    times = sorted(p.update_time for p in live)
    since, until = times[len(times) // 3], times[2 * len(times) // 3]
    listed = await all_pages(api, limit="5", sort_by="update_time",
                             updated_since=since.strftime("%Y-%m-%dT%H:%M:%SZ"),
                             updated_until=until.isoformat())
    expected = sorted((p for p in live if since <= p.update_time < until),
                      key=lambda p: (p.update_time, p.id))
    assert [p["id"] for p in listed] == [p.id for p in expected]


async def test_ids_filter_leaves_out_missing_and_deleted(
    pd: tuple[PipedriveSim, SimApi],
) -> None:
    sim, api = pd
    deleted = sim.facts.of("deleted")[0]
    answer = await api.get("/api/v2/persons", params={"ids": f"2,1,{deleted},99999"})
    assert [p["id"] for p in answer.json["data"]] == [1, 2]


# --- one person ----------------------------------------------------------------------


async def test_get_person_and_404s(pd: tuple[PipedriveSim, SimApi]) -> None:
    sim, api = pd
    answer = await api.get("/api/v2/persons/1")
    assert answer.status == 200 and answer.json["data"] == sim.person("1")
    for missing in (sim.facts.of("deleted")[0], "99999"):
        answer = await api.get(f"/api/v2/persons/{missing}")
        assert answer.status == 404
        assert answer.json == {"success": False, "error": "Person not found",
                               "error_info": "Please check developers.pipedrive.com",
                               "data": None, "additional_data": None}


async def test_create_patch_delete_through_the_api(pd: tuple[PipedriveSim, SimApi]) -> None:
    sim, api = pd
    org_id = int(sim.add_org("Analytical Engines Ltd"))
    body = {"first_name": "Ada", "last_name": "Lovelace", "org_id": org_id,
            "emails": [{"value": "ada@example.com", "primary": True, "label": "work"}],
            "phones": [{"value": "(415) 555-0134", "label": "mobile"}]}
    created = await api.post("/api/v2/persons", json=body)
    assert created.status == 200
    person = created.json["data"]
    assert person["name"] == "Ada Lovelace" and person["org_id"] == org_id
    assert person["phones"] == [{"value": "(415) 555-0134", "primary": True,
                                 "label": "mobile"}]
    pid = person["id"]
    patched = await api.patch(f"/api/v2/persons/{pid}", json={
        "job_title": "CTO", "phones": [{"value": "+44 7400 123456", "label": "work"}]})
    assert patched.json["data"]["job_title"] == "CTO"
    assert [p["value"] for p in patched.json["data"]["phones"]] == ["+44 7400 123456"]
    deleted = await api.delete(f"/api/v2/persons/{pid}")
    assert deleted.json == {"success": True, "data": {"id": pid}, "additional_data": None}
    assert (await api.get(f"/api/v2/persons/{pid}")).status == 404
    assert (await api.delete(f"/api/v2/persons/{pid}")).status == 404
    assert str(pid) not in sim.record_ids()


# --- search --------------------------------------------------------------------------


async def test_phone_search_compares_digits(pd: tuple[PipedriveSim, SimApi]) -> None:
    sim, api = pd
    pid = sim.add_person(name="Digits", phones=["(415) 555-0134"], notify=False)

    async def found(term: str, exact: str = "true") -> list[int]:
        answer = await api.get("/api/v2/persons/search", params={
            "term": term, "fields": "phone", "exact_match": exact})
        assert answer.status == 200, answer.json
        return [i["item"]["id"] for i in answer.json["data"]["items"]]

    assert await found("4155550134") == [int(pid)]
    assert await found("415-555-0134") == [int(pid)]
    assert await found("+14155550134") == []  # the country code is not typed: no match
    assert int(pid) in await found("5550134", exact="false")
    assert await found("5550134") == []
    e164, pair = next(iter(sim.facts.shared_phones.items()))
    nat = phonenumbers.national_significant_number(phonenumbers.parse(e164))
    assert sorted(await found(nat, exact="false")) == sorted(int(i) for i in pair)


async def test_search_items_shape_paging_and_term_rules(
    pd: tuple[PipedriveSim, SimApi],
) -> None:
    sim, api = pd
    org_id = int(sim.add_org("Searchable Org"))
    for n in range(3):
        sim.add_person(name=f"Quintessa {n}", org_id=org_id, emails=[f"q{n}@x.io"],
                       phones=["+1 646 555 0100"], notify=False)
    params = {"term": "quintessa", "fields": "name", "limit": "2"}
    first = await api.get("/api/v2/persons/search", params=params)
    (item, _) = first.json["data"]["items"]
    assert item["result_score"] > 0
    assert item["item"]["type"] == "person" and item["item"]["emails"] == ["q0@x.io"]
    assert item["item"]["organization"] == {"id": org_id, "name": "Searchable Org",
                                            "address": None}
    cursor = first.json["additional_data"]["next_cursor"]
    second = await api.get("/api/v2/persons/search", params={**params, "cursor": cursor})
    assert len(second.json["data"]["items"]) == 1
    assert second.json["additional_data"]["next_cursor"] is None
    moved = await api.get("/api/v2/persons/search",
                          params={**params, "term": "quint", "cursor": cursor})
    assert moved.status == 400
    for bad in ({"term": "q"}, {"term": ""}, {"term": "qq", "fields": "phone,fax"}):
        assert (await api.get("/api/v2/persons/search", params=bad)).status == 400
    one = await api.get("/api/v2/persons/search", params={"term": "q", "exact_match": "true"})
    assert one.status == 200


# --- organizations and the user ----------------------------------------------------------


async def test_organizations_by_ids_search_and_create(pd: tuple[PipedriveSim, SimApi]) -> None:
    sim, api = pd
    answer = await api.get("/api/v2/organizations", params={"ids": "2,1,99999"})
    assert [o["id"] for o in answer.json["data"]] == [1, 2]
    assert answer.json["data"][0]["name"] == sim.orgs[1].name
    too_many = ",".join(str(i) for i in range(1, 102))
    assert (await api.get("/api/v2/organizations", params={"ids": too_many})).status == 400
    created = await api.post("/api/v2/organizations", json={"name": "Babbage & Co"})
    org = created.json["data"]
    found = await api.get("/api/v2/organizations/search",
                          params={"term": "babbage & co", "fields": "name",
                                  "exact_match": "true"})
    (hit,) = found.json["data"]["items"]
    assert hit["item"] == {**hit["item"], "id": org["id"], "type": "organization"}
    assert (await api.post("/api/v2/organizations", json={})).status == 400


async def test_users_me(pd: tuple[PipedriveSim, SimApi]) -> None:
    _, api = pd
    me = (await api.get("/v1/users/me")).json["data"]
    assert {k: me[k] for k in ("id", "company_id", "company_domain", "company_country")} == {
        "id": 9, "company_id": 777, "company_domain": "acme", "company_country": "US"}


# --- notes ---------------------------------------------------------------------------


async def test_notes_create_list_page_delete(pd: tuple[PipedriveSim, SimApi]) -> None:
    sim, api = pd
    for n in range(5):
        answer = await api.post("/v1/notes", json={
            "content": f"<p>SMS {n}</p>", "person_id": 3, "add_time": "2025-01-01 15:00:00"})
        assert answer.status == 200, answer.json
    note = answer.json["data"]
    assert note["person_id"] == 3 and note["add_time"] == "2025-01-01 15:00:00"
    page = await api.get("/v1/notes", params={"person_id": "3", "limit": "2", "start": "2"})
    assert [n["content"] for n in page.json["data"]] == ["<p>SMS 2</p>", "<p>SMS 3</p>"]
    assert page.json["additional_data"]["pagination"] == {
        "start": 2, "limit": 2, "more_items_in_collection": True, "next_start": 4}
    last = await api.get("/v1/notes", params={"person_id": "3", "start": "4"})
    assert last.json["additional_data"]["pagination"]["more_items_in_collection"] is False
    none = await api.get("/v1/notes", params={"person_id": "4"})
    assert none.json["data"] is None
    assert (await api.get("/v1/notes", params={"limit": "501"})).status == 400
    assert (await api.delete(f"/v1/notes/{note['id']}")).status == 200
    assert (await api.delete(f"/v1/notes/{note['id']}")).status == 404
    assert [n["content"] for n in sim.notes_of("3")] == [f"<p>SMS {n}</p>" for n in range(4)]


@pytest.mark.parametrize(("path", "body", "named"), [
    ("/api/v2/persons", {"emails": [{"value": "a@b.c"}]}, "name"),
    ("/api/v2/persons", {"name": "  "}, "name"),
    ("/api/v2/persons", {"name": "X", "phones": ["+14155550134"]}, "phones[0]"),
    ("/api/v2/persons", {"name": "X", "phones": [{"value": "1", "label": "cell"}]},
     "phones[0].label"),
    ("/api/v2/persons", {"name": "X", "org_id": 99999}, "org_id"),
    ("/api/v2/persons", {"name": "X", "nickname": "x"}, "nickname"),
    ("/v1/notes", {"content": "", "person_id": 1}, "content"),
    ("/v1/notes", {"content": "x"}, "person_id"),
    ("/v1/notes", {"content": "x", "person_id": 99999}, "person_id"),
    ("/v1/notes", {"content": "x", "person_id": 1, "add_time": "2025-01-01T15:00:00Z"}, "add_time"),
    ("/v1/notes", {"content": "x", "person_id": 1, "user_id": 1}, "user_id"),
    ("/v1/notes", {"content": "x", "deal_id": 1}, "deal_id"),
])
async def test_bad_bodies_get_400_naming_the_field(
    pd: tuple[PipedriveSim, SimApi], path: str, body: dict[str, Any], named: str
) -> None:
    _, api = pd
    answer = await api.post(path, json=body)
    assert answer.status == 400 and named in error_of(answer)


async def test_no_notes_for_a_deleted_person(pd: tuple[PipedriveSim, SimApi]) -> None:
    sim, api = pd
    deleted = sim.facts.of("deleted")[0]
    answer = await api.post("/v1/notes", json={"content": "x", "person_id": int(deleted)})
    assert answer.status == 400


async def test_admin_routes_change_persons_as_the_app_does(
    pd: tuple[PipedriveSim, SimApi],
) -> None:
    sim, api = pd
    admin = SimApi(api.session, api.base_url, None)  # no token, no limits
    created = await admin.post("/_sim/persons", json={
        "name": "Björk", "phones": ["+354 611 1234"], "emails": ["bjork@example.is"]})
    assert created.status == 201
    pid = created.json["id"]
    assert sim.person(pid)["first_name"] is None
    assert sim.person(pid)["phones"] == [{"value": "+354 611 1234", "primary": True,
                                          "label": "mobile"}]
    bad = await admin.patch(f"/_sim/persons/{pid}", json={"nickname": "B"})
    assert bad.status == 400
    assert (await admin.patch("/_sim/persons/99999", json={"job_title": "x"})).status == 404
    assert (await admin.delete(f"/_sim/persons/{pid}")).status == 200
    assert pid not in sim.record_ids()
    stats = (await admin.get("/_sim/stats")).json
    assert stats["persons"] == len(sim.record_ids()) and stats["total_requests"] == 0


# --- seeding and the demo's view ------------------------------------------------------------


def test_seeding_is_deterministic_and_has_every_odd_case() -> None:
    one, two = (PipedriveSim(PipedriveSimConfig(people=100, seed=5)) for _ in range(2))
    assert [p.render() for p in one.persons] == [p.render() for p in two.persons]
    facts = one.facts
    for shape in ("no_phone", "national_phone", "international_phone", "junk_phone",
                  "shared_phone", "multi_phone", "name_only", "deleted"):
        assert facts.of(shape), shape
    for e164, pair in facts.shared_phones.items():
        assert len(pair) == 2
        assert all(one.person_phones(i) == [e164] for i in pair)
        assert len({one.live(i).phones[0]["value"] for i in pair}) == 2  # typed differently
    for pid in facts.of("name_only"):
        person = one.live(pid)
        assert person.name and person.first_name is None and person.last_name is None
    for pid in facts.of("national_phone"):
        (typed,) = one.live(pid).phone_values()
        assert not typed.startswith("+") and one.person_phones(pid)
    assert all(one.person_phones(pid) == [] for pid in facts.of("no_phone"))
    junk_only = [p for p in facts.of("junk_phone") if len(one.live(p).phones) == 1]
    assert junk_only and all(one.person_phones(p) == [] for p in junk_only)
    assert facts.multi_email and facts.no_email and facts.unicode_names and facts.imported
    orgs = [one.live(p).org_id for p in one.record_ids() if one.live(p).org_id]
    assert len(orgs) > len(set(orgs))  # organizations are shared
    assert len(orgs) < len(one.record_ids())  # and some persons have none
    for pid in one.record_ids():
        for e164 in one.person_phones(pid):
            assert phonenumbers.is_valid_number(phonenumbers.parse(e164))


async def test_entry_runs_the_simulator_for_the_demo() -> None:
    options = SimOptions(api_keys=["k1"], people=5, seed=2, rate=10)
    async with ENTRY.run(options) as (sim, url), aiohttp.ClientSession() as session:
        record = sim.record_ids()[0]
        lines = sim.try_lines(url, "k1", record)
        assert set(lines) == {"notes", "change", "person"}
        assert f"{url}/api/v2/persons/{record}" in lines["person"].line
        assert "x-api-token: k1" in lines["notes"].line
        assert f"{url}/_sim/persons/{record}" in lines["change"].line
        api = SimApi(session, url, None, headers={"x-api-token": "k1"})
        assert (await api.get(f"/api/v2/persons/{record}")).status == 200
        assert (await api.patch(f"/_sim/persons/{record}", json={"job_title": "CTO"})).json[
            "changed"] == ["job_title"]
        assert isinstance(sim, PipedriveSim) and sim.config.burst_limit == 20
        assert sim.requests_answered() == 1 and sim.rate_limited() == 0
    assert ENTRY.title == "Pipedrive" and ENTRY.webhook_secret is None


async def test_serve_forever_prints_the_url_and_stops_on_cancel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    options = SimOptions(api_keys=["k2"], people=3)
    serving: Coroutine[Any, Any, None] = ENTRY.serve_forever(  # type: ignore[assignment]
        "127.0.0.1", 0, options)
    task = asyncio.create_task(serving)
    output: list[str] = []

    def banner_printed() -> bool:
        output.append(capsys.readouterr().out)
        return "API key: k2" in "".join(output)

    await wait_until(banner_printed, message="the simulator's banner")
    url = "".join(output).split("Pipedrive simulator: ", 1)[1].split()[0]
    async with aiohttp.ClientSession() as session:
        api = SimApi(session, url, None, headers={"x-api-token": "k2"})
        assert len((await api.get("/api/v2/persons")).json["data"]) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
