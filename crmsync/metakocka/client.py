"""Async client for Metakocka's partner and search API, one per tenant's company link.

Every call goes through the shared `Transport` (`crmsync.net.transport`): the company's
limiter (one per company and host for the whole process: `metakocka_limiter`), a
timeout, typed errors, and retries with jittered backoff only where a repeat is safe.
Metakocka is POST-only JSON with the credentials in the body (research
`metakocka-api.md` §1): the client adds `secret_key` and `company_id` to each body it
hands the transport, and nothing here puts a body, or the key, in a log line, a repr
or an error message (`metakocka_errors` scrubs the key from Metakocka's own texts).

Which calls are repeated after an unsure failure (5xx, `opr_code` 1, a connection
lost): reads (`get_partner`, `search`) yes; `add_partner` never (Metakocka has no
idempotency key: every call creates a partner, so the caller reconciles with an intent
and a lookup); `update_partner` only when it adds nothing (a contact or address without
an `mk_id` would be added twice). "Quote exceeds" (`opr_code` 5) and 429 are retried
always: nothing was processed.

Metakocka runs one search at a time per company and queues the rest: searches
(`get_partner` by name, tax number, email or phone, and `search`) take the company's
lock (`SearchLocks`, shared by every client of that company in the process), so they
wait here, visibly, instead of holding connections open in Metakocka's queue.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from crmsync.metakocka.errors import (
    MetakockaDecodeError,
    MetakockaNotFoundError,
    metakocka_errors,
)
from crmsync.metakocka.models import (
    AddedPartner,
    DocumentPage,
    Partner,
    PartnerInput,
    PartnerUpdate,
    ShapeError,
    added_partner_from_json,
    document_page_from_json,
    input_to_json,
    partners_from_json,
    update_to_json,
)
from crmsync.net.ratelimit import (
    Lane,
    LimiterRegistry,
    Limiters,
    Limits,
    SlidingWindowLimiter,
)
from crmsync.net.retry import RetryPolicy
from crmsync.net.transport import DEFAULT_MAX_PAUSE, Transport

#: Metakocka publishes no numbers for its call-rate limit (`opr_code` 5 says when it is
#: hit); a modest default, paused and retried like a 429 when exceeded
METAKOCKA_LIMITS: Final = Limits(rate=10)
#: `search` returns at most this many documents per page
MAX_SEARCH_LIMIT: Final = 100
#: clients in the wild use 30 to 60 s: Metakocka can be slow (research §7)
DEFAULT_TIMEOUT: Final = 60.0


def company_key(base_url: str, company_id: str) -> str:
    """The company behind a link: its id on its installation (standalone servers have
    their own hosts, and their own company ids)."""
    host = urlsplit(base_url).netloc.lower() or base_url
    return f"{host}/{company_id}"


def metakocka_limiter(
    registry: LimiterRegistry,
    *,
    base_url: str,
    company_id: str,
    limits: Limits = METAKOCKA_LIMITS,
) -> SlidingWindowLimiter:
    """The process's limiter of one Metakocka company (every tenant linked to it shares
    it: Metakocka limits calls per company, whatever key makes them)."""
    return registry.for_account("metakocka", company_key(base_url, company_id), limits).read


class SearchLocks:
    """One lock per Metakocka company (and event loop) for the whole process."""

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, asyncio.Lock]
        ] = weakref.WeakKeyDictionary()

    def lock(self, company: str) -> asyncio.Lock:
        per_loop = self._locks.setdefault(asyncio.get_running_loop(), {})
        lock = per_loop.get(company)
        if lock is None:
            lock = per_loop[company] = asyncio.Lock()
        return lock


#: the default: every client in the process shares it
SEARCH_LOCKS: Final = SearchLocks()


class MetakockaClient:
    """Typed Metakocka partner calls for one company (`company_id` + `secret_key`)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        company_id: str,
        secret_key: str,
        limiter: SlidingWindowLimiter,
        timeout: float = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_pause: float = DEFAULT_MAX_PAUSE,
        search_locks: SearchLocks | None = None,
    ) -> None:
        self.company_id = company_id
        self.company = company_key(base_url, company_id)
        self._secret_key = secret_key
        self._search_locks = search_locks or SEARCH_LOCKS
        self._http = Transport(
            session,
            api="metakocka",
            base_url=base_url,
            headers={},  # the credentials travel in the body
            limiters=Limiters.shared(limiter),
            errors=metakocka_errors(secret_key),
            timeout=timeout,
            retry=retry,
            max_pause=max_pause,
        )

    def __repr__(self) -> str:  # never the secret key
        return f"MetakockaClient({self.company!r})"

    # -- plumbing -----------------------------------------------------------------------

    async def _post(
        self,
        endpoint: str,
        payload: Mapping[str, Any],
        *,
        lane: Lane,
        read: bool,
        idempotent: bool,
    ) -> dict[str, Any]:
        """POST `payload` plus the credentials to `endpoint`; the answer as a JSON object
        (the transport has raised `opr_code` errors already)."""
        route = f"/{endpoint}"
        body = {"secret_key": self._secret_key, "company_id": self.company_id, **payload}
        answer = await self._http.call(
            "POST", route, route=route, json=body, lane=lane, read=read,
            idempotent=idempotent,
        )
        if not isinstance(answer, dict):
            raise MetakockaDecodeError(
                "unexpected response: not a JSON object", method="POST", route=route
            )
        return answer

    @asynccontextmanager
    async def _search_slot(self) -> AsyncIterator[None]:
        async with self._search_locks.lock(self.company):
            yield

    @staticmethod
    def _shaped(route: str, answer: object, read: Any) -> Any:
        try:
            return read(answer)
        except ShapeError as exc:
            raise MetakockaDecodeError(
                f"unexpected response: {exc}", method="POST", route=route
            ) from exc

    # -- partners -----------------------------------------------------------------------

    async def get_partner(self, mk_id: str, *, lane: Lane = Lane.BACKFILL) -> Partner | None:
        """The partner with this `mk_id`, or None when Metakocka has none."""
        try:
            answer = await self._post(
                "get_partner", {"partner_id": mk_id}, lane=lane, read=True, idempotent=True
            )
        except MetakockaNotFoundError:
            return None
        partners: list[Partner] = self._shaped("/get_partner", answer, partners_from_json)
        return next((p for p in partners if p.mk_id == mk_id), None)

    async def find_partners(
        self,
        *,
        name: str | None = None,
        tax_number: str | None = None,
        email: str | None = None,
        phone: str | None = None,
        lane: Lane = Lane.BACKFILL,
    ) -> list[Partner]:
        """Partners matching every filter given (at least one); [] when none match.

        Metakocka matches `name` as a case-insensitive substring: compare names exactly
        before taking a match for the same party."""
        filters = {
            key: value.strip()
            for key, value in (
                ("partner_name", name), ("partner_tax_number", tax_number),
                ("partner_email", email), ("partner_phone_number", phone),
            )
            if value is not None and value.strip()
        }
        if not filters:
            raise ValueError("find_partners needs at least one filter")
        async with self._search_slot():
            try:
                answer = await self._post(
                    "get_partner", filters, lane=lane, read=True, idempotent=True
                )
            except MetakockaNotFoundError:
                return []
        partners: list[Partner] = self._shaped("/get_partner", answer, partners_from_json)
        return partners

    async def add_partner(
        self, partner: PartnerInput, *, lane: Lane = Lane.BACKFILL
    ) -> AddedPartner:
        """Create a partner. Never repeated here after an unsure failure: a second call
        would create a second partner (log an intent before, look it up after)."""
        answer = await self._post(
            "add_partner", {"partner": input_to_json(partner)}, lane=lane, read=False,
            idempotent=False,
        )
        added: AddedPartner = self._shaped("/add_partner", answer, added_partner_from_json)
        return added

    async def update_partner(
        self, update: PartnerUpdate, *, lane: Lane = Lane.BACKFILL
    ) -> Partner:
        """Apply `update` and return the partner as Metakocka has it afterwards.

        Repeated after an unsure failure only when it adds no contact or address."""
        answer = await self._post(
            "update_partner", {"partner": update_to_json(update)}, lane=lane, read=False,
            idempotent=not update.adds_something,
        )
        partners: list[Partner] = self._shaped("/update_partner", answer, partners_from_json)
        for partner in partners:
            if partner.mk_id == update.mk_id:
                return partner
        # No snapshot in the answer: read it (a safe repeat).
        current = await self.get_partner(update.mk_id, lane=lane)
        if current is None:
            raise MetakockaNotFoundError(
                f"partner {update.mk_id} not found after update_partner",
                method="POST", route="/update_partner",
            )
        return current

    # -- documents ----------------------------------------------------------------------

    async def search_documents(
        self,
        doc_type: str,
        *,
        last_change_from: str | datetime | None = None,
        offset: int = 0,
        limit: int = MAX_SEARCH_LIMIT,
        lane: Lane = Lane.BACKFILL,
    ) -> DocumentPage:
        """One page of documents of `doc_type` (`result_type` "doc": each with its
        partner's `mk_id`), changed at or after `last_change_from` when given."""
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_SEARCH_LIMIT}, got {limit}")
        if offset < 0:
            raise ValueError(f"offset must not be negative, got {offset}")
        payload: dict[str, Any] = {
            "doc_type": doc_type,
            "result_type": "doc",
            "offset": str(offset),
            "limit": str(limit),
        }
        if last_change_from is not None:
            stamp = (
                last_change_from.isoformat() if isinstance(last_change_from, datetime)
                else last_change_from
            )
            payload["query_advance"] = [{"type": "last_change_from", "value": stamp}]
        async with self._search_slot():
            try:
                answer = await self._post(
                    "search", payload, lane=lane, read=True, idempotent=True
                )
            except MetakockaNotFoundError:
                return DocumentPage(offset=offset, limit=limit, total=0)
        page: DocumentPage = self._shaped("/search", answer, document_page_from_json)
        return page
