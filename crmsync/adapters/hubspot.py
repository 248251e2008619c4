"""HubSpot (CRM v3 objects) adapter: contacts as people, notes as activity.

Listings go through the search API (`hubspot_search.py`): the full listing newest
first (`createdate` descending), polls from a watermark by `lastmodifieddate`. Search
has its own limit (4 requests per second per token), so it has a `Transport` of its
own; every other call shares the account's 100 requests per rolling 10 seconds. A
429 comes without `Retry-After`: the transport pauses the key for a jittered backoff
and retries. Search is eventually consistent (a write shows up after up to about a
minute), hence `changes_lag`.

Company names come from company associations (`hubspot_companies.py`), the record's
web URL from the account's `portalId` and `uiDomain` (`GET /account-info/v3/details`,
read once). Writes set contact properties (`hubspot_values.py`) and the company
association. Webhooks are a HubSpot app's, set up in HubSpot: nothing is created here,
deliveries are checked with the tenant's `crm_webhook_secret` (`hubspot_webhooks.py`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Unpack

import aiohttp
import msgspec

from crmsync.adapters import hubspot_search as search
from crmsync.adapters import hubspot_webhooks as webhooks
from crmsync.adapters.base import (
    CrmPage,
    CrmRecord,
    NoteInput,
    Person,
    PersonChanges,
    WebhookEvent,
)
from crmsync.adapters.errors import CRM_ERRORS, CrmAuthError, CrmDecodeError, CrmNotFoundError
from crmsync.adapters.http import HttpOptions, crm_transport
from crmsync.adapters.hubspot_companies import (
    Companies,
    Link,
    links_v3,
    next_after,
    results_of,
)
from crmsync.adapters.hubspot_notes import Notes
from crmsync.adapters.hubspot_values import (
    COMPANY,
    PROPERTIES,
    WEB_URL,
    error_body,
    has_phone,
    hubspot_object,
    person,
    person_properties,
    phone_filter_groups,
    properties_of,
    record_id,
    web_url,
)
from crmsync.net.ratelimit import Limits
from crmsync.net.transport import Transport

log = logging.getLogger(__name__)

DEFAULT_BASE_URL: Final = "https://api.hubapi.com"
#: Free/Starter private apps: 100 requests per rolling 10 s (higher tiers allow 190)
LIMITS: Final = Limits(rate=100, window=10.0)
SEARCH_LIMITS: Final = Limits(rate=4, window=1.0)
HUBSPOT_ERRORS: Final = dataclasses.replace(CRM_ERRORS, read_body=error_body)
BATCH: Final = 100  # the most ids one object batch read takes
PHONE_MATCHES: Final = 100
CONTACTS: Final = "/crm/v3/objects/contacts"


class HubSpotAdapter:
    """`CrmAdapter` for HubSpot."""

    name = "hubspot"
    webhooks_by_api = False
    #: search shows a write after up to about a minute; the rest covers clock skew
    changes_lag = 300.0

    def __init__(
        self, session: aiohttp.ClientSession, *, api_key: str, **options: Unpack[HttpOptions]
    ) -> None:
        def transport(api: str, limits: Limits) -> Transport:
            return crm_transport(
                session, api=api, api_key=api_key, limits=limits,
                headers={"Authorization": f"Bearer {api_key}"},
                default_base_url=DEFAULT_BASE_URL, errors=HUBSPOT_ERRORS, **options,
            )

        self._http = transport(self.name, LIMITS)
        self._search = transport("hubspot-search", SEARCH_LIMITS)
        self._companies = Companies(self._http, self._search)
        self._notes = Notes(self._http)
        self._account: tuple[str, str] | None = None  # (uiDomain, portalId)
        self._account_read = False
        #: epoch seconds now; tests set it to check the webhook timestamp window
        self.clock: Callable[[], float] = time.time

    # -- reading people ---------------------------------------------------------------

    async def fetch_page(self, crm_object: str, cursor: str | None, page_size: int) -> CrmPage:
        hubspot_object(crm_object)
        if cursor is None:
            self._companies.clear()  # a new pass: pick up renamed companies
        state, limit = search.plan(
            search.full_listing() if cursor is None else search.decode_cursor(cursor),
            page_size)
        path = f"{CONTACTS}/search"
        response = await self._search.call(
            "POST", path, json=search.search_body(state, limit, PROPERTIES), read=True)
        raws = self._contacts(results_of(response, "POST", path), "POST", path)
        prop = search.SWEEPS[state.sweep].prop
        seen = []
        for raw in raws:
            at = search.epoch_ms(properties_of(raw).get(prop))
            if at is None:
                raise CrmDecodeError(f"unexpected response: a contact without '{prop}'",
                                     method="POST", route=path)
            seen.append(search.Seen(str(raw["id"]), at))
        try:
            after = search.advance(state, seen, _has_next(response))
        except search.AnswerError as exc:
            raise CrmDecodeError(f"unexpected response: {exc}", method="POST",
                                 route=path) from exc
        records = await self._records(crm_object, raws)
        return CrmPage(records=records,
                       next_cursor=None if after is None else search.encode_cursor(after))

    def changed_since_cursor(self, crm_object: str, since: float) -> str | None:
        hubspot_object(crm_object)
        return search.encode_cursor(search.changed_since(since))

    async def fetch_by_ids(self, crm_object: str, ids: Sequence[str]) -> list[CrmRecord]:
        """The contacts of `ids` that exist (a 207 answer leaves the missing ones out);
        a merged-away id's survivor, which HubSpot answers in its place, is left out."""
        hubspot_object(crm_object)
        wanted = list(dict.fromkeys(ids))
        raws: list[dict[str, Any]] = []
        path = f"{CONTACTS}/batch/read"
        for start in range(0, len(wanted), BATCH):
            response = await self._http.call("POST", path, read=True, json={
                "properties": PROPERTIES,
                "inputs": [{"id": i} for i in wanted[start:start + BATCH]],
            })
            raws += self._contacts(results_of(response, "POST", path), "POST", path)
        asked = set(wanted)
        found = {raw["id"]: raw for raw in raws
                 if raw["id"] in asked and raw.get("archived") is not True}
        return await self._records(crm_object, list(found.values()))

    async def fetch_one(self, crm_object: str, record_id: str) -> CrmRecord | None:
        """The contact, or None when HubSpot answers 404, an archived contact, or
        another contact: a merged-away id is answered with the survivor, and the
        merged-away record is gone. Any other odd answer is a `CrmDecodeError`: None
        makes the caller delete the Quo contact."""
        hubspot_object(crm_object)
        raw = await self._read_contact(record_id)
        if raw is None or raw["id"] != record_id or raw.get("archived") is True:
            return None
        return (await self._records(crm_object, [raw], {raw["id"]: links_v3(raw)}))[0]

    async def _read_contact(self, contact_id: str) -> dict[str, Any] | None:
        path = f"{CONTACTS}/{contact_id}"
        try:
            response = await self._http.call(
                "GET", path, route=f"{CONTACTS}/{{id}}",
                params=[("properties", ",".join(PROPERTIES)), ("associations", "companies")])
        except CrmNotFoundError:
            return None
        (raw,) = self._contacts([response] if isinstance(response, dict) else [], "GET",
                                path, expect=1)
        return raw

    @staticmethod
    def _contacts(items: list[Any], method: str, route: str, expect: int | None = None
                  ) -> list[dict[str, Any]]:
        """`items` with their `id` as a string; one without is a `CrmDecodeError`."""
        contacts = []
        for item in items:
            contact_id = record_id(item)
            if contact_id is None or not isinstance(item, dict):
                raise CrmDecodeError("unexpected response: a contact without an 'id'",
                                     method=method, route=route)
            contacts.append({**item, "id": contact_id})
        if expect is not None and len(contacts) != expect:
            raise CrmDecodeError("unexpected response: no contact", method=method, route=route)
        return contacts

    async def _records(
        self, crm_object: str, raws: list[dict[str, Any]],
        links: dict[str, list[Link]] | None = None,
    ) -> list[CrmRecord]:
        """Records with their company name and web URL resolved."""
        if not raws:
            return []
        account = await self._account_info()
        if links is None:
            links = await self._companies.links([raw["id"] for raw in raws])
        await self._companies.resolve(links.values())
        records = []
        for raw in raws:
            related: dict[str, str] = {}
            if company := self._companies.name(links.get(raw["id"], [])):
                related[COMPANY] = company
            if account is not None:
                related[WEB_URL] = web_url(account[0], account[1], raw["id"])
            records.append(CrmRecord(crm_object=crm_object, record_id=raw["id"], raw=raw,
                                     related=related))
        return records

    async def _account_info(self) -> tuple[str, str] | None:
        """`(uiDomain, portalId)`, read once. A token without access to it (403) or an
        answer without a portal id only costs the web URL; a wrong token (401) is
        raised as ever."""
        if self._account_read:
            return self._account
        path = "/account-info/v3/details"
        try:
            response = await self._http.call("GET", path)
        except CrmAuthError as exc:
            if exc.status != 403:
                raise
            log.warning("HubSpot account details refused (%s): records without web URLs", exc)
            response = None
        portal = response.get("portalId") if isinstance(response, dict) else None
        domain = response.get("uiDomain") if isinstance(response, dict) else None
        if isinstance(portal, int | str) and not isinstance(portal, bool) and str(portal):
            ui = domain if isinstance(domain, str) and domain else "app.hubspot.com"
            self._account = (ui, str(portal))
        self._account_read = True
        return self._account

    def to_person(self, record: CrmRecord) -> Person:
        return person(record)

    # -- writing people ---------------------------------------------------------------

    async def update_person(
        self, crm_object: str, record_id: str, changes: PersonChanges
    ) -> CrmRecord:
        hubspot_object(crm_object)
        props = person_properties(changes)
        if props:
            # Idempotent: the properties are set, not added to.
            await self._http.call("PATCH", f"{CONTACTS}/{record_id}", route=f"{CONTACTS}/{{id}}",
                                  json={"properties": props}, idempotent=True)
        if not isinstance(changes.company, msgspec.UnsetType):
            await self._companies.set_only(record_id, (changes.company or "").strip() or None)
        raw = await self._read_contact(record_id)
        if raw is None:
            raise CrmNotFoundError("the contact is gone", status=404, method="GET",
                                   route=f"{CONTACTS}/{{id}}")
        return (await self._records(crm_object, [raw], {raw["id"]: links_v3(raw)}))[0]

    async def create_person(self, crm_object: str, changes: PersonChanges) -> CrmRecord:
        """Create the contact (with its company association, so one request makes it
        whole). It is not retried once sent, and built from the answer, not read again:
        a failed read after a successful create would make the caller create it twice."""
        hubspot_object(crm_object)
        body: dict[str, Any] = {"properties": person_properties(changes)}
        name = changes.company.strip() if isinstance(changes.company, str) else ""
        company_id = await self._companies.find_or_create(name) if name else None
        if company_id is not None:
            body["associations"] = [{"to": {"id": company_id}, "types": [{
                "associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]}]
        response = await self._http.call("POST", CONTACTS, json=body)
        (raw,) = self._contacts([response] if isinstance(response, dict) else [], "POST",
                                CONTACTS, expect=1)
        links = [Link(company_id, True)] if company_id is not None else links_v3(raw)
        return (await self._records(crm_object, [raw], {raw["id"]: links}))[0]

    # -- activity and webhooks --------------------------------------------------------

    async def find_people_by_phone(self, e164: str) -> list[str]:
        """Contacts whose `phone` or `mobilephone` is `e164`: searched in the forms it
        may be typed in, each hit confirmed by parsing its numbers. Search lags writes:
        a contact created a few seconds ago is not found yet."""
        groups = phone_filter_groups(e164)
        if not groups:
            return []
        path = f"{CONTACTS}/search"
        response = await self._search.call("POST", path, read=True, json={
            "filterGroups": groups, "properties": PROPERTIES, "limit": PHONE_MATCHES,
        })
        raws = self._contacts(results_of(response, "POST", path), "POST", path)
        return list(dict.fromkeys(raw["id"] for raw in raws if has_phone(raw, e164)))

    async def write_note(self, note: NoteInput) -> str:
        hubspot_object(note.crm_object)
        return await self._notes.write(note)

    async def delete_note(self, note_id: str) -> None:
        await self._notes.delete(note_id)

    async def find_note_ids(self, crm_object: str, person_id: str, marker: str) -> list[str]:
        hubspot_object(crm_object)
        return await self._notes.find(person_id, marker)

    async def ensure_webhook(self, target_url: str) -> tuple[str, str | None]:
        """A HubSpot app's webhooks are set up in HubSpot (private apps have no API for
        it): nothing to do; deliveries are signed with the tenant's secret."""
        return "hubspot-app", None

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, secret: str, *, method: str = "POST",
        url: str = "",
    ) -> None:
        webhooks.verify(headers, body, secret, method=method, url=url, now=self.clock())

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        return webhooks.parse(body)


def _has_next(response: Any) -> bool:
    return next_after(response) is not None
