"""Pipedrive over HTTP: the two budgets of a token, the account, and reading answers.

Every answer is `{"success", "data", "additional_data"}`; errors carry `error` and
`error_info` (read into the error's message). A token has a burst budget of 20 requests
per 2 s on the Lite plan (more on others: 20 is safe on every plan) and one of 10 per
2 s for search on every plan, counted apart.

When the company's daily token budget is spent, Pipedrive answers every request 429
without `Retry-After` until its midnight: the transport backs off between its retries,
and a 429 that outlasts them without a `Retry-After` parks both budgets of the key for
`max_pause`, so callers wait instead of spinning on a spent budget.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any, Final, NamedTuple, TypeVar, Unpack

import aiohttp

from crmsync.adapters import pipedrive_values as pv
from crmsync.adapters.errors import CRM_ERRORS, CrmDecodeError, CrmRateLimitedError
from crmsync.adapters.http import HttpOptions, crm_transport
from crmsync.net.ratelimit import LimiterRegistry, Limits
from crmsync.net.transport import DEFAULT_MAX_PAUSE, Transport

DEFAULT_BASE_URL: Final = "https://api.pipedrive.com"
LIMITS: Final = Limits(rate=20, window=2.0)
SEARCH_LIMITS: Final = Limits(rate=10, window=2.0)
ERRORS: Final = dataclasses.replace(CRM_ERRORS, read_body=pv.error_body)
USERS_ME: Final = "/v1/users/me"

T = TypeVar("T")


class Account(NamedTuple):
    """What `GET /v1/users/me` tells about the token's user and company."""

    user_id: int
    company_domain: str | None  # the web app's host: `{company_domain}.pipedrive.com`
    region: str | None  # the company's country: national phone numbers are in it


class PipedriveHttp:
    """The token's two transports (general and search) and its account, asked once."""

    def __init__(
        self, session: aiohttp.ClientSession, *, api_key: str, **options: Unpack[HttpOptions]
    ) -> None:
        # One registry (without the process's, in tests, one of its own) for both
        # transports and the pauses below: it keeps one set of limiters per label, so
        # `_limiters` are the ones the transports wait on.
        registry = options["limiters"] = options.get("limiters") or LimiterRegistry()
        self._limiters = (registry.for_account("pipedrive", api_key, LIMITS),
                          registry.for_account("pipedrive-search", api_key, SEARCH_LIMITS))

        def transport(api: str, limits: Limits) -> Transport:
            return crm_transport(
                session, api=api, api_key=api_key, limits=limits,
                headers={"x-api-token": api_key}, default_base_url=DEFAULT_BASE_URL,
                errors=ERRORS, **options,
            )

        self._general = transport("pipedrive", LIMITS)
        self._search = transport("pipedrive-search", SEARCH_LIMITS)
        self._max_pause = options.get("max_pause", DEFAULT_MAX_PAUSE)
        self._account: Account | None = None
        self._account_lock = asyncio.Lock()

    def __repr__(self) -> str:  # the transports' headers hold the key: never show them
        return "PipedriveHttp()"

    async def call(self, method: str, path: str, *, search: bool = False,
                   **options: Any) -> Any:
        """`Transport.call` on the general budget, or on both for a search."""
        try:
            if not search:
                return await self._general.call(method, path, **options)
            slot = await self._limiters[0].read.acquire()
            try:
                return await self._search.call(method, path, **options)
            finally:
                slot.done()
        except CrmRateLimitedError as error:
            if error.retry_after is None:
                for limits in self._limiters:  # the daily budget: see the module docstring
                    limits.read.pause(self._max_pause)
                    limits.write.pause(self._max_pause)
            raise

    async def account(self) -> Account:
        """`GET /v1/users/me`, once (a failed call is asked again next time)."""
        async with self._account_lock:
            if self._account is None:
                me = data(await self.call("GET", USERS_ME))
                user_id = pv.int_id(me.get("id")) if isinstance(me, dict) else None
                if not isinstance(me, dict) or user_id is None:
                    raise CrmDecodeError("unexpected response: no user in 'data'",
                                         method="GET", route=USERS_ME)
                self._account = Account(user_id, pv.text(me.get("company_domain")),
                                        pv.region(me.get("company_country")))
            return self._account


def chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def data(response: Any) -> Any:
    """The payload of an answer (None when there is none)."""
    return response.get("data") if isinstance(response, dict) else None


def data_list(response: Any, method: str, route: str, *, null_is_empty: bool = False
              ) -> list[dict[str, Any]]:
    """The objects of a list answer. No `data` list is a `CrmDecodeError`, not an empty
    list (that would end a listing early, or find no note where there is one); v1 lists
    answer `data: null` when there is nothing (`null_is_empty`)."""
    found = data(response)
    if found is None and null_is_empty and isinstance(response, dict) and "data" in response:
        return []
    if not isinstance(found, list):
        raise CrmDecodeError("unexpected response: no 'data' list", method=method, route=route)
    return [item for item in found if isinstance(item, dict)]


def created_id(response: Any, method: str, route: str) -> int:
    """`data.id` of what a POST created."""
    found = data(response)
    ident = pv.int_id(found.get("id")) if isinstance(found, dict) else None
    if ident is None:
        raise CrmDecodeError("unexpected response: no integer 'data.id'", method=method,
                             route=route)
    return ident


def search_items(response: Any, route: str) -> list[dict[str, Any]]:
    """The `item`s of a search answer (`data.items[].item`)."""
    found = data(response)
    items = found.get("items") if isinstance(found, dict) else None
    if not isinstance(items, list):
        raise CrmDecodeError("unexpected response: no 'data.items' list", method="GET",
                             route=route)
    return [i["item"] for i in items if isinstance(i, dict) and isinstance(i.get("item"), dict)]


def next_start(response: Any, after: int) -> int | None:
    """v1 paging: `additional_data.pagination.next_start` while more items follow
    (`after`, the offset past this page, when Pipedrive leaves it out)."""
    extra = response.get("additional_data") if isinstance(response, dict) else None
    pages = extra.get("pagination") if isinstance(extra, dict) else None
    if not isinstance(pages, dict) or pages.get("more_items_in_collection") is not True:
        return None
    following = pv.int_id(pages.get("next_start"))
    return after if following is None else following
