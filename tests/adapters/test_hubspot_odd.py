"""The HubSpot adapter against a stand-in HubSpot that answers in odd ways.

`fetch_one` returning None deletes the record's Quo contact, and a listing that ends
early leaves people out of Quo: only a 404, an archived contact or another contact
(a merged-away id) may be None, and only a missing `paging.next` ends a listing. Every
other odd answer is a `CrmDecodeError`, so the work is retried instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from support.adapter_http import served

from crmsync.adapters.errors import CrmAuthError, CrmDecodeError
from crmsync.adapters.hubspot import HubSpotAdapter

KEY = "hubspot-odd-key"
CONTACT = {"properties": {"firstname": "Ada", "createdate": "2025-01-01T10:00:00.000Z",
                          "lastmodifieddate": "2025-01-01T10:00:00.000Z"},
           "archived": False}


def contact(contact_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": contact_id, **CONTACT, **extra}


def answers() -> dict[str, Any]:
    return {
        "gone": (404, {"status": "error", "message": "resource not found",
                       "category": "OBJECT_NOT_FOUND", "correlationId": "c"}),
        "archived": (200, contact("archived", archived=True)),
        "merged": (200, contact("700")),  # HubSpot answers a merged-away id's survivor
        "null": (200, None),
        "a-list": (200, []),
        "no-id": (200, {"properties": {}}),
        "here": (200, contact("here", associations={"companies": {"results": [
            {"id": "9", "type": "contact_to_company_unlabeled"},
            {"id": "8", "type": "contact_to_company"},
            {"id": "8", "type": "contact_to_company_unlabeled"}]}})),
    }


@contextlib.asynccontextmanager
async def odd_hubspot(search: Any, account: tuple[int, Any] | None = None
                      ) -> AsyncIterator[tuple[str, list[str]]]:
    """A stand-in HubSpot; yields its base URL and the paths it was asked for."""
    asked: list[str] = []

    async def one(request: web.Request) -> web.Response:
        asked.append(request.path)
        status, body = answers()[request.match_info["id"]]
        if body is None:
            return web.Response(status=status, body=b"null", content_type="application/json")
        return web.json_response(body, status=status)

    async def searched(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response(search)

    async def details(request: web.Request) -> web.Response:
        asked.append(request.path)
        status, body = account or (200, {"portalId": 62515, "uiDomain": "app-eu1.hubspot.com"})
        return web.json_response(body, status=status)

    async def links(request: web.Request) -> web.Response:
        asked.append(request.path)
        return web.json_response({"status": "COMPLETE", "results": []})

    async def names(request: web.Request) -> web.Response:
        asked.append(request.path)
        body = await request.json()
        return web.json_response({"status": "COMPLETE", "results": [
            {"id": i["id"], "properties": {"name": f"Company {i['id']}"}}
            for i in body["inputs"]]})

    app = web.Application()
    app.router.add_get("/crm/v3/objects/contacts/{id}", one)
    app.router.add_post("/crm/v3/objects/contacts/search", searched)
    app.router.add_get("/account-info/v3/details", details)
    app.router.add_post("/crm/v4/associations/contacts/companies/batch/read", links)
    app.router.add_post("/crm/v3/objects/companies/batch/read", names)
    async with served(app) as root:
        yield root, asked


@contextlib.asynccontextmanager
async def adapter_for(search: Any = None, account: tuple[int, Any] | None = None
                      ) -> AsyncIterator[tuple[HubSpotAdapter, list[str]]]:
    async with odd_hubspot(search, account) as (base_url, asked), \
            aiohttp.ClientSession() as session:
        yield HubSpotAdapter(session, api_key=KEY, base_url=base_url, timeout=5), asked


@pytest.mark.parametrize("record_id", ["gone", "archived", "merged"])
async def test_fetch_one_is_none_for_a_404_an_archived_or_a_merged_away_contact(
    record_id: str,
) -> None:
    async with adapter_for() as (adapter, _):
        assert await adapter.fetch_one("people", record_id) is None


@pytest.mark.parametrize("record_id", ["null", "a-list", "no-id"])
async def test_fetch_one_answers_an_odd_200_with_a_decode_error_not_gone(record_id: str) -> None:
    async with adapter_for() as (adapter, _):
        with pytest.raises(CrmDecodeError):
            await adapter.fetch_one("people", record_id)


async def test_fetch_one_takes_the_primary_company_and_the_accounts_web_url() -> None:
    async with adapter_for() as (adapter, asked):
        record = await adapter.fetch_one("people", "here")
        assert record is not None
        person = adapter.to_person(record)
        assert person.company == "Company 8"  # the primary, though listed second
        assert person.web_url == "https://app-eu1.hubspot.com/contacts/62515/record/0-1/here"
        assert await adapter.fetch_one("people", "here") is not None
    # The embedded associations are used; the account is read once, names cached.
    assert asked == ["/crm/v3/objects/contacts/here", "/account-info/v3/details",
                     "/crm/v3/objects/companies/batch/read", "/crm/v3/objects/contacts/here"]


@pytest.mark.parametrize(
    "search",
    [
        None,
        {"total": 3},
        {"results": {"id": "1"}},
        {"results": [], "paging": {"next": {"after": "200"}}},
        {"results": [{"id": "1", "properties": {}}], "paging": {"next": {"after": "1"}}},
        {"results": [{"properties": {"createdate": "2025-01-01T10:00:00.000Z"}}]},
    ],
    ids=["null", "no-results", "results-not-a-list", "more-without-results", "no-createdate",
         "no-id"],
)
async def test_a_search_page_that_cannot_be_read_is_a_decode_error(search: Any) -> None:
    async with adapter_for(search) as (adapter, _):
        with pytest.raises(CrmDecodeError):
            await adapter.fetch_page("people", None, 10)


async def test_only_a_missing_paging_next_ends_the_listing() -> None:
    short = {"results": [contact("1")], "paging": {"next": {"after": "1"}}}
    async with adapter_for(short) as (adapter, _):
        page = await adapter.fetch_page("people", None, 10)
        assert [r.record_id for r in page.records] == ["1"]
        assert page.next_cursor is not None  # a short page with more to come
    last = {"results": [contact("1")]}
    async with adapter_for(last) as (adapter, _):
        assert (await adapter.fetch_page("people", None, 10)).next_cursor is None


async def test_a_token_without_account_access_only_loses_the_web_url() -> None:
    refused = (403, {"status": "error", "message": "This app hasn't been granted all "
                     "required scopes", "category": "MISSING_SCOPES"})
    async with adapter_for(account=refused) as (adapter, _):
        record = await adapter.fetch_one("people", "here")
        assert record is not None and adapter.to_person(record).web_url is None
    wrong = (401, {"status": "error", "message": "Authentication credentials not found.",
                   "category": "INVALID_AUTHENTICATION"})
    async with adapter_for(account=wrong) as (adapter, _):
        with pytest.raises(CrmAuthError):
            await adapter.fetch_one("people", "here")


async def test_a_cursor_of_another_adapter_is_a_value_error() -> None:
    async with adapter_for() as (adapter, asked):
        with pytest.raises(ValueError, match="not a HubSpot listing cursor"):
            await adapter.fetch_page("people", "200", 10)
        with pytest.raises(ValueError, match="only people"):
            await adapter.fetch_page("deals", None, 10)
    assert asked == []
