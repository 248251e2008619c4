"""The Attio adapter against the Attio simulator on a real socket.

Covers offset paging (a short page ends the listing), company names resolved with one
query per page and cached, current values only (`active_until: null`), lookups by
phone, notes, webhook set-up and signatures, and retries on 429 and 5xx. Requests are
counted twice: by the simulator (per route template) and by an aiohttp trace on the
client session, which also sees each request's path and body.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from support.adapter_http import Seen, receiver, recording_trace, served

from crmsync.adapters.attio import AttioAdapter, WebhookSignatureError
from crmsync.adapters.base import CrmRecord, NoteInput
from crmsync.adapters.errors import CrmApiError, CrmAuthError, CrmDecodeError
from crmsync.net.ratelimit import slot_trace_config
from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator, sign
from crmsync.sim.quo.testing import wait_until

KEY = "attio-test-key"
PEOPLE = 60
PAGE = 20
QUERY_ROUTE = "/v2/objects/{object}/records/query"


@dataclass
class Env:
    sim: AttioSim
    base_url: str
    adapter: AttioAdapter
    session: aiohttp.ClientSession
    seen: list[Seen] = field(default_factory=list)

    def queries(self, crm_object: str) -> list[dict[str, Any]]:
        """Bodies of the records/query requests the client sent for one object."""
        path = f"/v2/objects/{crm_object}/records/query"
        return [msgspec.json.decode(s.body) for s in self.seen if s.path == path]

    def sim_queries(self) -> int:
        return self.sim.stats.total(route=QUERY_ROUTE)


@contextlib.asynccontextmanager
async def attio_env(people: int = PEOPLE, api_key: str = KEY) -> AsyncIterator[Env]:
    seen: list[Seen] = []
    async with (
        run_attio_simulator(config=AttioSimConfig(people=people)) as (sim, base_url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config(), recording_trace(seen)]) as s,
    ):
        adapter = AttioAdapter(s, api_key=api_key, base_url=base_url, timeout=5)
        yield Env(sim, base_url, adapter, s, seen)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with attio_env() as env:
        yield env


async def all_pages(adapter: AttioAdapter, page_size: int) -> list[list[CrmRecord]]:
    pages: list[list[CrmRecord]] = []
    cursor: str | None = None
    while True:
        page = await adapter.fetch_page("people", cursor, page_size)
        pages.append(page.records)
        if page.next_cursor is None:
            return pages
        assert page.next_cursor == str(sum(len(p) for p in pages))
        cursor = page.next_cursor


def company_ids(records: list[CrmRecord]) -> set[str]:
    ids = set()
    for record in records:
        for value in record.raw["values"]["company"]:
            if value["active_until"] is None:
                ids.add(value["target_record_id"])
    return ids


# -- paging ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("people", "sizes"),
    [(45, [20, 20, 5, 0]), (40, [20, 20, 0]), (7, [7, 0])],
    ids=["short-last-page", "exact-multiple", "single-short-page"],
)
async def test_offset_paging_covers_every_person_once_and_an_empty_page_ends(
    people: int, sizes: list[int]
) -> None:
    async with attio_env(people) as env:
        pages = await all_pages(env.adapter, PAGE)
        assert [len(p) for p in pages] == sizes
        ids = [r.record_id for page in pages for r in page]
        assert len(ids) == len(set(ids)) == people
        assert set(ids) == {r.record_id for r in env.sim.people}
        offsets = [q.get("offset") for q in env.queries("people")]
        assert offsets == [sum(sizes[:i]) for i in range(len(sizes))]
        assert all(q["limit"] == PAGE for q in env.queries("people"))


async def test_pages_cut_short_do_not_end_the_listing() -> None:
    """1. 45 people; Attio answers every full page of the listing short (1-19 of 20
       records, more following), as when records are filtered after the limit
    2. page through the people
    Result: every person exactly once; the listing ends on an empty page. (Regression
    test, found by the fault suite: a short page ended the listing, so an initial sync
    was "completed" without the people after it, and a page cut short every time
    would have kept them out of Quo for good.)"""
    async with attio_env(45) as env:
        env.sim.faults.short_page_rate = 1.0
        pages = await all_pages(env.adapter, PAGE)
        assert env.sim.faults.short_pages >= 2
        assert len(pages[-1]) == 0 and all(pages[:-1])
        ids = [r.record_id for page in pages for r in page]
        assert sorted(ids) == sorted(r.record_id for r in env.sim.people)


async def test_a_page_answered_with_the_page_before_it_is_asked_again() -> None:
    """1. 45 people, pages of 20; Attio answers the request for offset 20 once with
       the page at offset 0 (a stale listing)
    2. page through the people
    Result: the adapter sees the repeat and asks for offset 20 again; every person
    exactly once. (Regression test, found by the fault suite: the cursor moved on past
    the page that never came, so the initial sync committed a cursor ahead of 20
    unmapped people and called itself complete.)"""
    async with attio_env(45) as env:
        env.sim.faults.repeat_page_next = 1
        pages = await all_pages(env.adapter, PAGE)
        assert env.sim.faults.repeated_pages == 1
        assert [q["offset"] for q in env.queries("people")] == [0, 20, 20, 40, 45]
        ids = [r.record_id for page in pages for r in page]
        assert ids == [r.record_id for r in reversed(env.sim.people.ordered())]


async def test_a_listing_that_keeps_repeating_a_page_is_an_error_not_a_skip() -> None:
    """Attio answers every page after the first with the page before it: after a few
    tries the adapter raises `CrmDecodeError` (the pass restarts from its checkpoint,
    visibly), instead of paging on past records it never saw."""
    async with attio_env(45) as env:
        env.sim.faults.repeat_page_rate = 1.0
        first = await env.adapter.fetch_page("people", None, PAGE)
        with pytest.raises(CrmDecodeError, match="page before"):
            await env.adapter.fetch_page("people", first.next_cursor, PAGE)


async def test_fetch_by_ids_returns_exactly_those_records(env: Env) -> None:
    wanted = [r.record_id for r in env.sim.people.ordered()[5:9]]
    records = await env.adapter.fetch_by_ids("people", wanted)
    assert sorted(r.record_id for r in records) == sorted(wanted)
    assert await env.adapter.fetch_by_ids("people", []) == []


# -- companies -------------------------------------------------------------------------


async def test_company_names_are_resolved_with_one_query_per_page_and_cached(env: Env) -> None:
    """1. fetch page 0: one people query plus ONE companies query for all its companies
    2. fetch page 0 again: that starts a new pass, which refreshes company names once
       (a renamed company must reach Quo), again with ONE query
    3. fetch the next pages: a companies query only for companies not seen before.
    Result: names match the simulator's company names."""
    names = {c.record_id: c.first_active("name")["value"] for c in env.sim.companies}

    page0 = await env.adapter.fetch_page("people", None, PAGE)
    wanted = company_ids(page0.records)
    assert wanted, "seed 1 links page 0 to companies"
    company_queries = env.queries("companies")
    assert len(company_queries) == 1
    assert set(company_queries[0]["filter"]["record_id"]["$in"]) == wanted
    assert env.sim_queries() == 2  # one people query, one companies query
    for record in page0.records:
        ids = company_ids([record])
        expected = {names[i] for i in ids}
        assert set(record.related.values()) == expected
        person = env.adapter.to_person(record)
        assert person.company == (names[next(iter(ids))] if ids else None)

    again = await env.adapter.fetch_page("people", None, PAGE)
    assert len(env.queries("companies")) == 2
    assert set(env.queries("companies")[1]["filter"]["record_id"]["$in"]) == wanted
    assert env.sim_queries() == 4
    assert [r.related for r in again.records] == [r.related for r in page0.records]

    known = set(wanted)
    cursor = page0.next_cursor
    while cursor is not None:
        before = len(env.queries("companies"))
        page = await env.adapter.fetch_page("people", cursor, PAGE)
        new = company_ids(page.records) - known
        queries = env.queries("companies")[before:]
        if new:
            assert len(queries) == 1
            assert set(queries[0]["filter"]["record_id"]["$in"]) == new
        else:
            assert queries == []
        known |= new
        for record in page.records:
            assert set(record.related.values()) == {names[i] for i in company_ids([record])}
        cursor = page.next_cursor


async def test_an_unknown_company_reference_leaves_the_company_empty(env: Env) -> None:
    company = next(iter(env.sim.companies))
    record_id = env.sim.add_person(first_name="Ada", company_id=company.record_id,
                                   notify=False)
    env.sim.companies.remove(company.record_id)  # deleted after the person was linked
    (record,) = await env.adapter.fetch_by_ids("people", [record_id])
    assert env.adapter.to_person(record).company is None


# -- current values only ---------------------------------------------------------------


def active_view(sim: AttioSim, record_id: str) -> dict[str, Any]:
    stored = sim.person(record_id)
    name = stored.first_active("name") or {}
    title = stored.first_active("job_title") or {}
    return {
        "first": name.get("first_name") or None,
        "last": name.get("last_name") or None,
        "emails": [v["email_address"] for v in stored.active("email_addresses")],
        "phones": sim.person_phones(record_id),
        "title": title.get("value"),
    }


async def test_seeded_history_never_leaks_into_the_person(env: Env) -> None:
    with_history = set(env.sim.facts.with_history)
    assert with_history
    records = [r for page in await all_pages(env.adapter, 50) for r in page]
    checked = 0
    for record in records:
        if record.record_id not in with_history:
            continue
        person = env.adapter.to_person(record)
        view = active_view(env.sim, record.record_id)
        assert person.first_name == view["first"]
        assert person.last_name == view["last"]
        assert "Former" not in (person.last_name or "") + (person.full_name or "")
        assert [e.value for e in person.emails] == view["emails"]
        assert not any("oldcorp.example" in e.value for e in person.emails)
        assert [p.e164 for p in person.phones if p.e164] == view["phones"]
        assert person.job_title == view["title"]
        checked += 1
    assert checked == len(with_history)


async def test_updated_values_replace_the_old_ones(env: Env) -> None:
    record_id = env.sim.add_person(
        first_name="Old", last_name="Name", emails=["old@example.com"],
        phones=["+38640111111"], job_title="Intern", notify=False,
    )
    env.sim.update_person(
        record_id, first_name="New", last_name="Person", emails=["new@example.com"],
        phones=["+38641222222"], job_title="CTO", notify=False,
    )
    (record,) = await env.adapter.fetch_by_ids("people", [record_id])
    assert len(record.raw["values"]["name"]) == 2  # the history is really there
    person = env.adapter.to_person(record)
    assert (person.first_name, person.last_name) == ("New", "Person")
    assert [e.value for e in person.emails] == ["new@example.com"]
    assert [p.e164 for p in person.phones] == ["+38641222222"]
    assert person.job_title == "CTO"
    assert person.web_url and record_id in person.web_url


async def test_national_and_invalid_numbers_reach_the_person_as_typed(env: Env) -> None:
    national = env.sim.facts.of("national_phone")[0]
    invalid = env.sim.facts.of("invalid_phone")[0]
    records = {r.record_id: r for r in await env.adapter.fetch_by_ids(
        "people", [national, invalid])}
    (phone,) = env.adapter.to_person(records[national]).phones
    assert phone.e164 is None and phone.raw and phone.country_code
    (bad,) = env.adapter.to_person(records[invalid]).phones
    assert bad.e164 is None and bad.country_code is None


# -- lookups, notes, webhooks ----------------------------------------------------------


async def test_find_people_by_phone_finds_both_people_sharing_a_number(env: Env) -> None:
    shared = env.sim.facts.shared_phones
    assert shared
    for e164, record_ids in shared.items():
        assert len(record_ids) == 2
        assert sorted(await env.adapter.find_people_by_phone(e164)) == sorted(record_ids)
    assert await env.adapter.find_people_by_phone("+38649999999") == []


async def test_write_note_creates_a_note_on_the_person(env: Env) -> None:
    person_id = env.sim.people.ordered()[0].record_id
    note_id = await env.adapter.write_note(NoteInput(
        crm_object="people", person_id=person_id, title="Call: inbound (42s)",
        markdown="**Summary**\n\n- asked for a quote", created_at="2024-05-01T10:00:00Z",
    ))
    note = env.sim.notes[note_id]
    assert note["parent_object"] == "people"
    assert note["parent_record_id"] == person_id
    assert note["title"] == "Call: inbound (42s)"
    assert note["content_markdown"] == "**Summary**\n\n- asked for a quote"
    assert note["created_at"].startswith("2024-05-01T10:00:00")

    await env.adapter.delete_note(note_id)
    assert note_id not in env.sim.notes
    await env.adapter.delete_note(note_id)  # already gone: not an error


async def test_ensure_webhook_creates_once_then_reuses(env: Env) -> None:
    url = "https://sync.example.com/webhooks/acme/crm"
    webhook_id, secret = await env.adapter.ensure_webhook(url)
    assert secret
    assert await env.adapter.ensure_webhook(url) == (webhook_id, None)
    assert env.sim.stats.total(route="/v2/webhooks") == 3  # list, create, list
    assert env.sim.stats.requests["POST /v2/webhooks 200"] == 1
    assert list(env.sim.webhooks) == [webhook_id]
    events = {s["event_type"] for s in env.sim.webhooks[webhook_id].subscriptions}
    assert events == {"record.created", "record.updated", "record.deleted", "record.merged"}


async def test_ensure_webhook_finds_its_webhook_behind_ten_others(env: Env) -> None:
    api = {"Authorization": f"Bearer {KEY}"}
    for i in range(10):
        body = {"data": {"target_url": f"https://other{i}.example.com/hook",
                         "subscriptions": [{"event_type": "note.created", "filter": None}]}}
        async with env.session.post(f"{env.base_url}/webhooks", json=body,
                                    headers=api) as response:
            assert response.status == 200
    url = "https://sync.example.com/webhooks/acme/crm"
    webhook_id, _ = await env.adapter.ensure_webhook(url)
    assert (await env.adapter.ensure_webhook(url))[0] == webhook_id
    assert len(env.sim.webhooks) == 11


async def test_ensure_webhook_replaces_a_webhook_attio_deactivated(env: Env) -> None:
    """1. ensure_webhook creates our webhook (secret A)
    2. Attio deactivates it (`status: inactive`: its deliveries kept failing; nothing is
       delivered to it any more)
    3. ensure_webhook again
    Result: the inactive webhook is deleted and a new one created, with a new secret;
    a third ensure_webhook reuses it. (Regression test, found by the fault suite: an
    inactive webhook was reused forever, so CRM changes arrived by polling only and
    the subscription keeper reported it healthy.)
    """
    url = "https://sync.example.com/webhooks/acme/crm"
    first, secret = await env.adapter.ensure_webhook(url)
    env.sim.expire_webhook(first)
    second, new_secret = await env.adapter.ensure_webhook(url)
    assert second != first and new_secret and new_secret != secret
    assert list(env.sim.webhooks) == [second]
    assert env.sim.webhooks[second].status == "active"
    assert await env.adapter.ensure_webhook(url) == (second, None)


async def test_verify_webhook_accepts_attio_signature_and_rejects_others(env: Env) -> None:
    """1. ensure_webhook for a local receiver; keep the secret (shown only on create)
    2. a person is created: the simulator delivers a signed `record.created`
    3. verify with the right secret, a wrong secret, a tampered body, no header.
    Result: only the genuine delivery passes."""
    async with receiver() as rec:
        _, secret = await env.adapter.ensure_webhook(rec.url)
        assert secret is not None
        env.sim.add_person(first_name="Ada", last_name="Lovelace")
        async with asyncio.timeout(5):
            await rec.arrived.wait()
    headers, body = rec.received[0]
    assert msgspec.json.decode(body)["events"][0]["event_type"] == "record.created"

    env.adapter.verify_webhook(headers, body, secret)
    only_x = {k: v for k, v in headers.items() if k != "Attio-Signature"}
    env.adapter.verify_webhook(only_x, body, secret)
    env.adapter.verify_webhook({"Attio-Signature": sign(secret, body).upper()}, body, secret)

    with pytest.raises(WebhookSignatureError):
        env.adapter.verify_webhook(headers, body, "0" * 64)
    with pytest.raises(WebhookSignatureError):
        env.adapter.verify_webhook(headers, body + b" ", secret)
    with pytest.raises(WebhookSignatureError):
        env.adapter.verify_webhook({"Content-Type": "application/json"}, body, secret)
    with pytest.raises(WebhookSignatureError):
        env.adapter.verify_webhook({"Attio-Signature": ""}, body, secret)


# -- retries ---------------------------------------------------------------------------


async def test_a_429_is_retried_after_retry_after_and_succeeds(env: Env) -> None:
    env.sim.faults.rate_limit_next = 1
    page = await env.adapter.fetch_page("people", None, PAGE)
    assert len(page.records) == PAGE
    assert env.sim.stats.rate_limited == 1
    assert env.sim.stats.requests[f"POST {QUERY_ROUTE} 429"] == 1
    assert len(env.queries("people")) == 2  # the 429 and its retry
    assert env.sim.faults.rate_limit_next == 0


async def test_5xx_answers_are_retried_and_the_call_succeeds(env: Env) -> None:
    env.sim.faults.fail_next = 2
    page = await env.adapter.fetch_page("people", None, PAGE)
    assert len(page.records) == PAGE
    assert env.sim.stats.injected_failures == 2
    assert env.sim.stats.requests[f"POST {QUERY_ROUTE} 500"] == 2
    assert len(env.queries("people")) == 3


async def test_a_5xx_on_a_note_write_is_not_blindly_retried(env: Env) -> None:
    """A 5xx may come after the note was written: repeating the POST could write it
    twice. The error goes up (the activity logger retries through its marker check)."""
    person_id = env.sim.people.ordered()[0].record_id
    env.sim.faults.fail_next = 1
    with pytest.raises(CrmApiError):
        await env.adapter.write_note(NoteInput(
            crm_object="people", person_id=person_id, title="SMS", markdown="hello"))
    assert env.sim.stats.requests["POST /v2/notes 500"] == 1
    assert sum(n for k, n in env.sim.stats.requests.items() if k.startswith("POST /v2/notes")) == 1


async def test_a_wrong_key_fails_at_once_without_retries() -> None:
    async with attio_env(people=3, api_key="wrong-key") as env:
        with pytest.raises(CrmAuthError) as caught:
            await env.adapter.fetch_page("people", None, PAGE)
        assert caught.value.status == 401
        assert "wrong-key" not in str(caught.value)
        assert env.sim_queries() == 1


# -- odd answers and hostile webhooks ---------------------------------------------------


@contextlib.asynccontextmanager
async def odd_attio() -> AsyncIterator[str]:
    """A stand-in Attio whose record lookups answer in odd ways, chosen by the record id."""

    async def record(request: web.Request) -> web.Response:
        answers: dict[str, web.Response] = {
            "gone": web.json_response(
                {"status_code": 404, "type": "invalid_request_error", "code": "not_found",
                 "message": "Record not found."}, status=404),
            "data-null": web.json_response({"data": None}),
            "no-content": web.Response(status=204),
            "a-list": web.json_response([]),
            "no-id": web.json_response({"data": {"values": {}}}),
            "id-not-an-object": web.json_response({"data": {"id": "rec-1", "values": {}}}),
            "here": web.json_response({"data": {
                "id": {"workspace_id": "ws-1", "object_id": "obj-people", "record_id": "here"},
                "values": {},
            }}),
        }
        return answers[request.match_info["record_id"]]

    app = web.Application()
    app.router.add_get("/v2/objects/{object}/records/{record_id}", record)
    async with served(app) as root:
        yield f"{root}/v2"


@pytest.mark.parametrize(
    "record_id", ["data-null", "no-content", "a-list", "no-id", "id-not-an-object"]
)
async def test_fetch_one_answers_an_odd_200_with_a_decode_error_not_gone(record_id: str) -> None:
    """`fetch_one` returning None deletes the record's Quo contact: only a 404 may mean
    that. A 204 or `{"data": null}` used to be None; now every odd answer is a
    `CrmDecodeError`, so the change is retried instead."""
    async with odd_attio() as base_url, aiohttp.ClientSession() as session:
        adapter = AttioAdapter(session, api_key=KEY, base_url=base_url, timeout=5)
        with pytest.raises(CrmDecodeError):
            await adapter.fetch_one("people", record_id)


async def test_fetch_one_is_none_for_a_404_and_the_record_otherwise() -> None:
    async with odd_attio() as base_url, aiohttp.ClientSession() as session:
        adapter = AttioAdapter(session, api_key=KEY, base_url=base_url, timeout=5)
        assert await adapter.fetch_one("people", "gone") is None
        record = await adapter.fetch_one("people", "here")
        assert record is not None and record.record_id == "here"


async def test_verify_webhook_rejects_a_non_ascii_signature_as_a_signature_error(
    env: Env,
) -> None:
    """hmac.compare_digest raises TypeError for a non-ASCII str (the listener's 500)."""
    body = b'{"events": []}'
    for given in ("é" * 64, sign("s", body)[:-1] + "\N{SNOWMAN}", "\udcff" * 64):
        with pytest.raises(WebhookSignatureError):
            env.adapter.verify_webhook({"Attio-Signature": given}, body, "s")


async def test_the_event_id_is_the_signed_body_hash_and_attio_retries_keep_it(
    env: Env,
) -> None:
    """1. a receiver answers Attio's first attempt 500 and the retry 200 2. a person is
    created 3. both attempts are parsed; then the same body with another
    `Idempotency-Key` (a header Attio does not sign)
    Result: the simulator resent the same bytes with the same key; every parse gives the
    same event id, the body's SHA-256: a replayed capture is a duplicate too."""
    async with receiver("/hook", answers=[500]) as rec:
        await env.adapter.ensure_webhook(rec.url)
        env.sim.add_person(first_name="Ada", last_name="Lovelace")
        await wait_until(lambda: len(rec.received) >= 2, within=5, message="the retry")
    (first_headers, first), (retry_headers, retry) = rec.received
    assert first == retry
    assert first_headers["Idempotency-Key"] == retry_headers["Idempotency-Key"]
    replayed = {**first_headers, "Idempotency-Key": "replayed-with-a-new-key"}
    ids = {env.adapter.parse_webhook(h, b).event_id
           for h, b in ((first_headers, first), (retry_headers, retry), (replayed, first))}
    assert ids == {hashlib.sha256(first).hexdigest()}
