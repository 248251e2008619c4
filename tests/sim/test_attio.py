"""The Attio simulator over real sockets: auth, query paging and filters, records,
seeding, rate limits, faults, notes and the /_sim/ admin routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import phonenumbers
import pytest

from crmsync.sim.attio import (
    AttioSim,
    AttioSimConfig,
    run_attio_simulator,
    serve_attio_simulator_forever,
)
from crmsync.sim.attio.ratelimit import SlidingWindow, retry_after_date

KEY = "attio-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
PEOPLE = 120


@pytest.fixture
async def attio() -> AsyncIterator[tuple[AttioSim, str]]:
    async with run_attio_simulator(config=AttioSimConfig(people=PEOPLE)) as pair:
        yield pair


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def query(
    http: aiohttp.ClientSession, base: str, body: dict[str, Any], obj: str = "people"
) -> tuple[int, Any]:
    async with http.post(f"{base}/objects/{obj}/records/query", json=body) as resp:
        return resp.status, await resp.json()


async def all_ids(http: aiohttp.ClientSession, base: str, limit: int) -> list[str]:
    ids: list[str] = []
    offset = 0
    while True:
        status, body = await query(http, base, {"limit": limit, "offset": offset})
        assert status == 200
        assert set(body) == {"data"}  # no cursor, no total
        ids += [r["id"]["record_id"] for r in body["data"]]
        if len(body["data"]) < limit:
            return ids
        offset += limit


def active(record: dict[str, Any], attribute: str) -> list[dict[str, Any]]:
    return [v for v in record["values"][attribute] if v["active_until"] is None]


# --- auth -------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}])
async def test_requests_without_a_valid_bearer_key_get_401(
    attio: tuple[AttioSim, str], headers: dict[str, str]
) -> None:
    _, base = attio
    async with aiohttp.ClientSession() as anonymous, anonymous.post(
        f"{base}/objects/people/records/query", json={}, headers=headers
    ) as resp:
        assert resp.status == 401
        body = await resp.json()
    assert body["status_code"] == 401
    assert body["type"] == "auth_error"
    assert body["code"] == "unauthorized"
    assert isinstance(body["message"], str)


# --- query paging, order, filters --------------------------------------------------


async def test_offset_paging_returns_only_data_and_a_short_last_page(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = attio
    sizes = []
    for offset in range(0, PEOPLE + 1, 50):
        _, body = await query(http, base, {"limit": 50, "offset": offset})
        assert list(body) == ["data"]
        sizes.append(len(body["data"]))
    assert sizes == [50, 50, 20]
    ids = await all_ids(http, base, 50)
    assert len(ids) == len(set(ids)) == PEOPLE
    assert set(ids) == {r.record_id for r in sim.people}


async def test_default_order_is_stable_creation_order(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = attio
    first, second = await all_ids(http, base, 7), await all_ids(http, base, 500)
    assert first == second
    _, body = await query(http, base, {})  # default limit 500 covers everyone
    created = [r["created_at"] for r in body["data"]]
    assert created == sorted(created)
    expected = [r.record_id for r in sorted(sim.people, key=lambda r: r.created_at)]
    assert first == expected


async def test_sorts_by_created_at_descending(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession
) -> None:
    _, base = attio
    forward = await all_ids(http, base, 500)
    _, body = await query(
        http, base, {"sorts": [{"attribute": "created_at", "direction": "desc"}], "limit": 500}
    )
    assert [r["id"]["record_id"] for r in body["data"]] == forward[::-1]


async def test_record_id_in_filter(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = attio
    wanted = [r.record_id for r in sim.people.ordered()[3:9]]
    _, body = await query(http, base, {"filter": {"record_id": {"$in": [*wanted, "nope"]}}})
    assert [r["id"]["record_id"] for r in body["data"]] == wanted


async def test_phone_filter_finds_both_people_sharing_a_number(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = attio
    phone, owners = next(iter(sim.facts.shared_phones.items()))
    assert len(owners) == 2
    for spec in (
        {"phone_numbers": phone},
        {"phone_numbers": {"phone_number": {"$eq": phone}}},
        {"$and": [{"phone_numbers": phone}]},
    ):
        _, body = await query(http, base, {"filter": spec, "limit": 10})
        assert sorted(r["id"]["record_id"] for r in body["data"]) == sorted(owners), spec
    _, body = await query(http, base, {"filter": {"phone_numbers": "+10000000000"}})
    assert body == {"data": []}


async def test_email_filter_and_companies_by_id(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = attio
    person = sim.person(sim.facts.with_company[0])
    email = person.active("email_addresses")[0]["email_address"]
    _, body = await query(http, base, {"filter": {"email_addresses": email}})
    assert person.record_id in [r["id"]["record_id"] for r in body["data"]]
    company_id = person.active("company")[0]["target_record_id"]
    _, body = await query(
        http, base, {"filter": {"record_id": {"$in": [company_id]}}}, obj="companies"
    )
    (company,) = body["data"]
    assert active(company, "name")[0]["value"]
    assert active(company, "domains")[0]["domain"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"filter": {"favourite_colour": "blue"}}, "filter_error"),
        ({"filter": {"phone_numbers": {"$regex": "+1"}}}, "filter_error"),
        ({"filter": "phone"}, "filter_error"),
        ({"limit": "10"}, "validation_type"),
        ({"limit": 0}, "validation_type"),
        ({"offset": -1}, "validation_type"),
        ({"offset": 1.5}, "validation_type"),
        ({"sorts": [{"attribute": "created_at", "direction": "up"}]}, "validation_type"),
        ({"cursor": "abc"}, "validation_type"),
    ],
)
async def test_bad_query_bodies_get_400(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession, body: dict[str, Any], code: str
) -> None:
    _, base = attio
    status, answer = await query(http, base, body)
    assert status == 400
    assert answer["type"] == "invalid_request_error"
    assert answer["code"] == code
    if code == "filter_error":
        assert answer == {"status_code": 400, "type": "invalid_request_error",
                          "code": "filter_error", "message": "Error in filter."}


async def test_unknown_object_is_404(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession
) -> None:
    _, base = attio
    status, body = await query(http, base, {}, obj="deals")
    assert status == 404
    assert body["code"] == "not_found"


# --- single records -----------------------------------------------------------------


async def test_get_record_and_404_shape(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = attio
    record = sim.people.ordered()[0]
    async with http.get(f"{base}/objects/people/records/{record.record_id}") as resp:
        assert resp.status == 200
        body = await resp.json()
    data = body["data"]
    assert data["id"] == {"workspace_id": sim.workspace.workspace_id,
                          "object_id": sim.workspace.object_id("people"),
                          "record_id": record.record_id}
    assert data["web_url"] == f"https://app.attio.com/acme/person/{record.record_id}"
    assert data["created_at"].endswith("Z")
    missing = "00000000-0000-4000-8000-000000000000"
    async with http.get(f"{base}/objects/people/records/{missing}") as resp:
        assert resp.status == 404
        assert await resp.json() == {
            "status_code": 404, "type": "invalid_request_error", "code": "not_found",
            "message": f'Record with ID "{missing}" not found.',
        }


async def test_history_values_are_returned_with_active_until(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = attio
    assert sim.facts.with_history
    for record_id in sim.facts.with_history:
        async with http.get(f"{base}/objects/people/records/{record_id}") as resp:
            values = (await resp.json())["data"]["values"]
        closed = [
            (attr, v) for attr, vs in values.items() for v in vs if v["active_until"] is not None
        ]
        assert closed, record_id
        for attr, value in closed:
            assert values[attr][0] is not None
            assert value["active_from"] < value["active_until"]
            assert {"created_by_actor", "attribute_type"} <= set(value)


# --- seeding ------------------------------------------------------------------------


def test_seeding_is_deterministic() -> None:
    def snapshot(seed: int) -> list[dict[str, Any]]:
        sim = AttioSim(AttioSimConfig(people=60, seed=seed))
        return [sim.render(r) for r in sim.people.ordered()] + [
            sim.render(r) for r in sim.companies.ordered()
        ]

    assert snapshot(7) == snapshot(7)
    assert snapshot(7) != snapshot(8)


def test_seed_contains_every_odd_case() -> None:
    sim = AttioSim(AttioSimConfig(people=200))
    facts = sim.facts
    for shape in ("email_only", "full_name_only", "no_phone", "multi_phone",
                  "invalid_phone", "national_phone", "shared_phone"):
        assert facts.of(shape), shape
    for rid in facts.of("invalid_phone"):
        (phone,) = sim.person(rid).active("phone_numbers")
        assert "phone_number" not in phone and phone["original_phone_number"]
    for rid in facts.of("national_phone"):
        (phone,) = sim.person(rid).active("phone_numbers")
        assert "phone_number" not in phone and phone["country_code"]
        parsed = phonenumbers.parse(phone["original_phone_number"], phone["country_code"])
        assert phonenumbers.is_valid_number(parsed)
    assert all(len(sim.person_phones(r)) >= 2 for r in facts.of("multi_phone"))
    assert all(not sim.person(r).active("phone_numbers") for r in facts.of("no_phone"))
    for rid in facts.of("email_only"):
        person = sim.person(rid)
        assert not person.active("name") and not person.active("phone_numbers")
        assert person.active("email_addresses")
    for rid in facts.of("full_name_only"):
        (name,) = sim.person(rid).active("name")
        assert name["first_name"] == name["last_name"] == "" and name["full_name"]
    assert all(len(ids) == 2 for ids in facts.shared_phones.values())
    assert 0.55 < len(facts.with_company) / 200 < 0.85
    assert len(sim.companies) == 20
    assert facts.unicode_names and facts.with_job_title and facts.with_history
    for record in sim.people:
        for e164 in sim.person_phones(record.record_id):
            assert phonenumbers.is_valid_number(phonenumbers.parse(e164, None)), e164


# --- rate limits and faults ---------------------------------------------------------


async def test_reads_over_the_limit_get_429_with_retry_after_date() -> None:
    config = AttioSimConfig(people=5, read_rate_per_second=5, write_rate_per_second=2)
    async with run_attio_simulator(config=config) as (sim, base), aiohttp.ClientSession(
        headers=AUTH
    ) as http:
        statuses = []
        limited: tuple[dict[str, str], Any] | None = None
        for _ in range(8):
            async with http.post(f"{base}/objects/people/records/query", json={}) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    limited = dict(resp.headers), await resp.json()
        assert statuses[:5] == [200] * 5
        assert 429 in statuses[5:]
        assert limited is not None
        headers, body = limited
        assert body == {"status_code": 429, "type": "rate_limit_error",
                        "code": "rate_limit_exceeded",
                        "message": "Rate limit exceeded, please try again later"}
        retry_at = parsedate_to_datetime(headers["Retry-After"])
        now = datetime.now(UTC)
        assert now - timedelta(seconds=1) <= retry_at <= now + timedelta(seconds=2)
        # Writes have their own window.
        person = sim.people.ordered()[0].record_id
        note = {"data": {"parent_object": "people", "parent_record_id": person,
                         "title": "t", "format": "plaintext", "content": "c"}}
        async with http.post(f"{base}/notes", json=note) as resp:
            assert resp.status == 200
        assert sim.stats.rate_limited == statuses.count(429)
        assert sim.stats.total(route="/v2/objects/{object}/records/query", status=200) == 5


async def test_injected_faults(attio: tuple[AttioSim, str], http: aiohttp.ClientSession) -> None:
    sim, base = attio
    admin = base.removesuffix("/v2") + "/_sim"
    async with http.post(f"{admin}/faults", json={"fail_next": 1, "rate_limit_next": 1}) as r:
        assert (await r.json())["fail_next"] == 1
    assert (await query(http, base, {"limit": 1}))[0] == 500
    status, body = await query(http, base, {"limit": 1})
    assert status == 429 and body["code"] == "rate_limit_exceeded"
    assert (await query(http, base, {"limit": 1}))[0] == 200
    assert sim.stats.injected_failures == 2


# --- notes --------------------------------------------------------------------------


def note_body(record_id: str, **overrides: Any) -> dict[str, Any]:
    data = {"parent_object": "people", "parent_record_id": record_id, "title": "Call: inbound",
            "format": "markdown", "content": "**Summary** talked about *pricing*"}
    data.update(overrides)
    return {"data": data}


async def test_notes_create_list_get_delete(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession
) -> None:
    sim, base = attio
    person, other = (r.record_id for r in sim.people.ordered()[:2])
    backdated = "2024-05-01T10:00:00.000000000Z"
    async with http.post(f"{base}/notes", json=note_body(person, created_at=backdated)) as r:
        assert r.status == 200
        note = (await r.json())["data"]
    assert note["parent_object"] == "people" and note["parent_record_id"] == person
    assert note["id"]["workspace_id"] == sim.workspace.workspace_id
    assert note["content_markdown"] == "**Summary** talked about *pricing*"
    assert "**" not in note["content_plaintext"]
    assert note["tags"] == [] and note["created_at"] == backdated
    async with http.post(f"{base}/notes", json=note_body(other, format="plaintext")) as r:
        assert r.status == 200
    note_id = note["id"]["note_id"]
    params = {"parent_object": "people", "parent_record_id": person}
    async with http.get(f"{base}/notes", params=params) as r:
        assert [n["id"]["note_id"] for n in (await r.json())["data"]] == [note_id]
    async with http.get(f"{base}/notes/{note_id}") as r:
        assert (await r.json())["data"] == note
    async with http.patch(f"{base}/notes/{note_id}", json={"data": {"title": "x"}}) as r:
        assert r.status in (404, 405)
        assert (await r.json())["type"] == "invalid_request_error"
    async with http.delete(f"{base}/notes/{note_id}") as r:
        assert r.status == 200 and await r.json() == {}
    async with http.get(f"{base}/notes/{note_id}") as r:
        assert r.status == 404


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"parent_record_id": "00000000-0000-4000-8000-000000000000"}, 404),
        ({"parent_object": "deals"}, 404),
        ({"format": "html"}, 400),
        ({"created_at": "2999-01-01T00:00:00Z"}, 400),
        ({"created_at": "1969-12-31T00:00:00Z"}, 400),
        ({"title": None}, 400),
    ],
)
async def test_bad_notes_are_rejected(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession,
    overrides: dict[str, Any], status: int,
) -> None:
    sim, base = attio
    person = sim.people.ordered()[0].record_id
    async with http.post(f"{base}/notes", json=note_body(person, **overrides)) as r:
        assert r.status == status
        assert (await r.json())["status_code"] == status
    assert not sim.notes


# --- admin routes -------------------------------------------------------------------


async def test_admin_routes_mutate_people_with_history(
    attio: tuple[AttioSim, str], http: aiohttp.ClientSession
) -> None:
    _, base = attio
    admin = base.removesuffix("/v2") + "/_sim"
    async with aiohttp.ClientSession() as anonymous:  # no auth needed
        async with anonymous.post(f"{admin}/people", json={
            "first_name": "Žiga", "last_name": "Novak", "phones": ["+38640123456"],
            "emails": ["ziga@example.si"],
        }) as r:
            assert r.status == 201
            record_id = (await r.json())["record_id"]
        async with anonymous.patch(f"{admin}/people/{record_id}",
                                   json={"phones": ["+38641999888"], "job_title": "CTO"}) as r:
            assert sorted((await r.json())["changed"]) == ["job_title", "phone_numbers"]
        async with anonymous.get(f"{admin}/stats") as r:
            stats = await r.json()
    assert stats["people"] == PEOPLE + 1
    _, body = await query(http, base, {"filter": {"phone_numbers": "+38640123456"}})
    assert body["data"] == []  # the old number is history now
    _, body = await query(http, base, {"filter": {"phone_numbers": "+38641999888"}})
    (record,) = body["data"]
    phones = record["values"]["phone_numbers"]
    assert [p["phone_number"] for p in phones] == ["+38640123456", "+38641999888"]
    assert phones[0]["active_until"] is not None and phones[1]["active_until"] is None
    assert (await all_ids(http, base, 500))[-1] == record_id  # newest is last
    async with aiohttp.ClientSession() as anonymous, anonymous.delete(
        f"{admin}/people/{record_id}"
    ) as r:
        assert r.status == 200
    async with http.get(f"{base}/objects/people/records/{record_id}") as r:
        assert r.status == 404


def test_sliding_window_is_exact_over_any_second() -> None:
    """Not a fixed per-second bucket: 3 at t=0.5 block t=1.0..1.5, free again at 1.5."""
    window = SlidingWindow(3)
    assert [window.try_admit(0.5) for _ in range(3)] == [None, None, None]
    assert window.try_admit(1.0) == pytest.approx(0.5)
    assert window.try_admit(1.25) is not None
    assert window.try_admit(1.5) is None
    assert retry_after_date(1_700_000_000.2) == "Tue, 14 Nov 2023 22:13:21 GMT"


async def test_serve_forever_prints_the_base_url_and_stops_on_cancel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    task = asyncio.create_task(serve_attio_simulator_forever(config=AttioSimConfig(people=3)))
    output = ""
    async with asyncio.timeout(5):  # poll the captured output with a deadline
        while "API key: attio-test-key" not in output:
            await asyncio.sleep(0.01)
            output += capsys.readouterr().out
    base = output.split("Attio simulator: ", 1)[1].split()[0]
    async with aiohttp.ClientSession(headers=AUTH) as http:
        status, body = await query(http, base, {})
    assert status == 200 and len(body["data"]) == 3
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
