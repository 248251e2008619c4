"""Answers the Pipedrive simulator never gives, from a small fake: a person marked
deleted with a 200, bodies without their lists or cursors, a cursor answering itself,
v1 lists with `data: null`. Each must be a `CrmDecodeError` (retried, visible), never an
empty page or a deletion; where Pipedrive documents `null` as "none", it is none."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from crmsync.adapters.base import NoteInput, PersonChanges
from crmsync.adapters.errors import CrmDecodeError, CrmRejectedError
from crmsync.adapters.pipedrive import PipedriveAdapter
from crmsync.sim._kit.server import run_app

ME = {"success": True, "data": {"id": 9, "company_domain": "acme", "company_country": "US"}}
PERSON = {"id": 5, "name": "Ada", "org_id": None, "emails": [], "phones": []}
ANSWERS = web.AppKey("answers", dict)


@contextlib.asynccontextmanager
async def fake(answers: dict[str, Any], seen: list[str] | None = None
               ) -> AsyncIterator[PipedriveAdapter]:
    """An adapter talking to a server that answers each path with `answers[path]`
    (`users/me` answered by default; a `(status, body)` pair sets the status); a
    missing path is a 404. `seen` collects the paths asked for."""

    async def handle(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(request.path)
        answer = {"/v1/users/me": ME, **answers}.get(request.path)
        if answer is None:
            return web.json_response({"success": False, "error": "Person not found"},
                                     status=404)
        if isinstance(answer, tuple):
            return web.json_response(answer[1], status=answer[0])
        return web.json_response(answer)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    async with run_app(app) as (_, base_url), aiohttp.ClientSession() as session:
        yield PipedriveAdapter(session, api_key="k", base_url=base_url, timeout=5)


@pytest.mark.parametrize("answer", [
    {"success": True, "data": None, "additional_data": {"next_cursor": None}},
    {"success": True, "data": {}, "additional_data": {"next_cursor": None}},
    {"success": True, "data": [PERSON]},
    {"success": True, "data": [PERSON], "additional_data": {}},
    {"success": True, "data": [PERSON], "additional_data": {"next_cursor": ""}},
    {"success": True, "data": [PERSON], "additional_data": {"next_cursor": 7}},
    [PERSON],
], ids=["data-null", "data-object", "no-additional-data", "no-next-cursor",
        "empty-cursor", "cursor-not-a-string", "a-bare-list"])
async def test_a_listing_answer_out_of_shape_is_a_decode_error(answer: Any) -> None:
    async with fake({"/api/v2/persons": answer}) as adapter:
        with pytest.raises(CrmDecodeError):
            await adapter.fetch_page("people", None, 10)


async def test_a_cursor_answered_as_its_own_next_is_a_decode_error() -> None:
    answer = {"success": True, "data": [PERSON], "additional_data": {"next_cursor": "abc"}}
    async with fake({"/api/v2/persons": answer}) as adapter:
        page = await adapter.fetch_page("people", None, 10)
        assert page.next_cursor == "a|abc"
        with pytest.raises(CrmDecodeError, match="answered itself"):
            await adapter.fetch_page("people", page.next_cursor, 10)


async def test_an_empty_page_with_a_cursor_does_not_end_the_listing() -> None:
    answer = {"success": True, "data": [], "additional_data": {"next_cursor": "more"}}
    async with fake({"/api/v2/persons": answer}) as adapter:
        page = await adapter.fetch_page("people", None, 10)
        assert (page.records, page.next_cursor) == ([], "a|more")


async def test_persons_marked_deleted_are_left_out_of_listings() -> None:
    listed = {"success": True, "data": [PERSON, {**PERSON, "id": 6, "is_deleted": True}],
              "additional_data": {"next_cursor": None}}
    async with fake({"/api/v2/persons": listed}) as adapter:
        page = await adapter.fetch_page("people", None, 10)
        assert [r.record_id for r in page.records] == ["5"]
        assert [r.record_id for r in await adapter.fetch_by_ids("people", ["5", "6"])] == ["5"]


async def test_fetch_one_none_only_for_404_and_deleted() -> None:
    deleted = {"success": True, "data": {**PERSON, "is_deleted": True}}
    async with fake({"/api/v2/persons/5": deleted}) as adapter:
        assert await adapter.fetch_one("people", "5") is None
        assert await adapter.fetch_one("people", "6") is None  # 404
    for odd in ({"success": True, "data": None}, {"success": True, "data": [PERSON]},
                {"success": True, "data": {"id": "5"}}):
        async with fake({"/api/v2/persons/5": odd}) as adapter:
            with pytest.raises(CrmDecodeError):
                await adapter.fetch_one("people", "5")


async def test_an_account_without_a_user_is_a_decode_error_and_asked_again() -> None:
    seen: list[str] = []
    me = {"success": True, "data": {"name": "x"}}
    async with fake({"/v1/users/me": me}, seen) as adapter:
        for _ in range(2):
            with pytest.raises(CrmDecodeError, match="no user"):
                await adapter.find_people_by_phone("+14155550134")
    assert seen == ["/v1/users/me", "/v1/users/me"]


async def test_search_and_write_answers_out_of_shape() -> None:
    answers = {
        "/api/v2/persons/search": {"success": True, "data": {"results": []}},
        "/api/v2/persons/5": {"success": True, "data": {"id": None}},
        "/api/v2/organizations/search": {"success": True, "data": {"items": []}},
        "/api/v2/organizations": {"success": True, "data": {"name": "Acme"}},
        "/v1/notes": {"success": True, "data": {"id": "n1"}},
        "/v1/webhooks": {"success": True, "data": None},
    }
    async with fake(answers) as adapter:
        with pytest.raises(CrmDecodeError, match=r"data\.items"):
            await adapter.find_people_by_phone("+14155550134")
        with pytest.raises(CrmDecodeError, match="no person"):
            await adapter.update_person("people", "5", PersonChanges(job_title="X"))
        with pytest.raises(CrmDecodeError, match=r"data\.id"):
            await adapter.create_person("people", PersonChanges(company="Acme"))
        with pytest.raises(CrmDecodeError, match="'data' list"):
            await adapter.find_note_ids("people", "5", "quo:x")
        with pytest.raises(CrmDecodeError, match=r"data\.id"):
            await adapter.write_note(NoteInput(crm_object="people", person_id="5",
                                               title="t", markdown="m"))


async def test_v1_lists_with_data_null_are_empty() -> None:
    answers = {
        "/v1/notes": {"success": True, "data": None,
                      "additional_data": {"pagination": {"more_items_in_collection": False}}},
        "/v1/webhooks": {"success": True, "data": None},
    }
    async with fake(answers) as adapter:
        assert await adapter.find_note_ids("people", "5", "quo:x") == []
        with pytest.raises(CrmDecodeError, match=r"data\.id"):  # POST answered like the list
            await adapter.ensure_webhook("https://x.example/hook")


async def test_error_bodies_name_pipedrives_message() -> None:
    refused = (400, {"success": False, "error": "Validation failed: org_id: not found",
                     "errorCode": 400, "error_info": "Please check developers.pipedrive.com"})
    async with fake({"/api/v2/persons/5": refused}) as adapter:
        with pytest.raises(CrmRejectedError, match="Validation failed: org_id"):
            await adapter.update_person("people", "5", PersonChanges(job_title="X"))
