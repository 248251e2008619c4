"""Pipedrive adapter: persons, organizations and search on API v2; notes, webhooks and
the account (`users/me`) on v1, which has no v2 twin for them.

Paging: `GET /api/v2/persons` with Pipedrive's cursor, wrapped in a cursor of our own
(`pipedrive_values.py`): the full listing newest first (`add_time desc`), the changed
persons oldest change first (`updated_since`, `update_time asc`). Only a `next_cursor`
of null ends a listing. Organization names: `pipedrive_orgs.py`.

The account (`GET /v1/users/me`, once) gives the web URL's host (`company_domain`),
the country national phone numbers are in (`company_country`) and the user webhooks
are created for.

Calls, limits and the account: `pipedrive_http.py`; pure values: `pipedrive_values.py`;
webhooks: `pipedrive_webhooks.py`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, Unpack

import aiohttp

from crmsync.adapters import pipedrive_values as pv
from crmsync.adapters.base import (
    CrmPage,
    CrmRecord,
    NoteInput,
    Person,
    PersonChanges,
    WebhookEvent,
)
from crmsync.adapters.errors import CrmDecodeError, CrmNotFoundError
from crmsync.adapters.html_notes import note_html
from crmsync.adapters.http import HttpOptions
from crmsync.adapters.pipedrive_http import (
    PipedriveHttp,
    chunks,
    created_id,
    data,
    data_list,
    next_start,
    search_items,
)
from crmsync.adapters.pipedrive_orgs import MAX_IDS, Organizations
from crmsync.adapters.pipedrive_webhooks import (
    check_basic_auth,
    credentials,
    parse_event,
    plan_hooks,
)

MAX_PAGE: Final = 500  # the most GET /api/v2/persons returns
NOTES_PAGE_SIZE: Final = 100
SEARCH_LIMIT: Final = 100
PERSONS: Final = "/api/v2/persons"


class PipedriveAdapter:
    """`CrmAdapter` for Pipedrive."""

    name = "pipedrive"
    webhooks_by_api = True
    changes_lag = 60.0

    def __init__(
        self, session: aiohttp.ClientSession, *, api_key: str, **options: Unpack[HttpOptions]
    ) -> None:
        self._api = PipedriveHttp(session, api_key=api_key, **options)
        self._api_key = api_key  # the webhook credentials derive from it
        self._orgs = Organizations(self._api)

    # -- reading people ---------------------------------------------------------------

    async def fetch_page(self, crm_object: str, cursor: str | None, page_size: int) -> CrmPage:
        listing = pv.decode_cursor(cursor)
        if cursor is None:
            self._orgs.clear()  # a new pass: pick up renamed organizations
        params = [("limit", str(max(1, min(page_size, MAX_PAGE))))]
        if listing.since is None:
            params += [("sort_by", "add_time"), ("sort_direction", "desc")]
        else:
            params += [("updated_since", listing.since), ("sort_by", "update_time"),
                       ("sort_direction", "asc")]
        if listing.cursor:
            params.append(("cursor", listing.cursor))
        response = await self._api.call("GET", PERSONS, params=params)
        raws = data_list(response, "GET", PERSONS)
        extra = response.get("additional_data")  # a dict: data_list found its data
        following = extra.get("next_cursor", "") if isinstance(extra, dict) else ""
        if not (following is None or (isinstance(following, str) and following)):
            raise CrmDecodeError("unexpected response: no 'additional_data.next_cursor'",
                                 method="GET", route=PERSONS)
        if following is not None and following == listing.cursor:
            raise CrmDecodeError("unexpected response: the cursor answered itself as the next",
                                 method="GET", route=PERSONS)
        records = await self._records(crm_object, _live(raws))
        next_cursor = None if following is None \
            else pv.encode_cursor(pv.Listing(listing.since, following))
        return CrmPage(records=records, next_cursor=next_cursor)

    def changed_since_cursor(self, crm_object: str, since: float) -> str | None:
        return pv.encode_cursor(pv.Listing(pv.rfc3339(since), None))

    async def fetch_by_ids(self, crm_object: str, ids: Sequence[str]) -> list[CrmRecord]:
        # A Pipedrive id is an integer: any other cannot exist (and would be a 400).
        wanted = [i for i in dict.fromkeys(ids) if i.isdigit()]
        raws: list[dict[str, Any]] = []
        for chunk in chunks(wanted, MAX_IDS):
            response = await self._api.call("GET", PERSONS, params=[
                ("ids", ",".join(chunk)), ("limit", str(len(chunk))),
            ])
            raws += data_list(response, "GET", PERSONS)
        return await self._records(crm_object, _live(raws))

    async def fetch_one(self, crm_object: str, record_id: str) -> CrmRecord | None:
        """The record, or None when Pipedrive answers 404 or a person marked deleted.

        None makes the caller delete the record's Quo contact, so any other answer that
        is not a person is a `CrmDecodeError`: the change is retried, never taken for a
        deletion.
        """
        route = f"{PERSONS}/{{id}}"
        try:
            response = await self._api.call("GET", f"{PERSONS}/{record_id}", route=route)
        except CrmNotFoundError:
            return None
        raw = data(response)
        if not isinstance(raw, dict) or pv.person_id(raw) is None:
            raise CrmDecodeError("unexpected response: no person in 'data'", method="GET",
                                 route=route)
        if raw.get("is_deleted") is True:
            return None
        return (await self._records(crm_object, [raw]))[0]

    async def _records(self, crm_object: str, raws: list[dict[str, Any]]) -> list[CrmRecord]:
        account = await self._api.account()
        await self._orgs.resolve(raws)
        records = []
        for raw in raws:
            record_id = pv.person_id(raw)
            if record_id is None:
                continue
            related = {pv.WEB_URL: pv.web_url(account.company_domain, record_id)}
            if account.region:
                related[pv.REGION] = account.region
            if company := self._orgs.name(raw):
                related["company"] = company
            records.append(
                CrmRecord(crm_object=crm_object, record_id=record_id, raw=raw, related=related)
            )
        return records

    def to_person(self, record: CrmRecord) -> Person:
        return pv.person(record)

    # -- writing people ---------------------------------------------------------------

    async def update_person(
        self, crm_object: str, record_id: str, changes: PersonChanges
    ) -> CrmRecord:
        if changes.is_empty():  # nothing to write: Pipedrive refuses an empty PATCH
            record = await self.fetch_one(crm_object, record_id)
            if record is None:
                raise CrmNotFoundError("person not found", status=404, method="GET",
                                       route=f"{PERSONS}/{{id}}")
            return record
        body = pv.person_body(changes, await self._org_for(changes), create=False)
        # Idempotent: values are set, and the lists replace Pipedrive's.
        response = await self._api.call("PATCH", f"{PERSONS}/{record_id}", json=body,
                                        route=f"{PERSONS}/{{id}}", idempotent=True)
        return await self._written(crm_object, response, "PATCH", f"{PERSONS}/{{id}}")

    async def create_person(self, crm_object: str, changes: PersonChanges) -> CrmRecord:
        body = pv.person_body(changes, await self._org_for(changes), create=True)
        # Not retried once sent: a create whose answer was lost would be made twice.
        response = await self._api.call("POST", PERSONS, json=body)
        return await self._written(crm_object, response, "POST", PERSONS)

    async def _written(self, crm_object: str, response: Any, method: str, route: str
                       ) -> CrmRecord:
        raw = data(response)
        if not isinstance(raw, dict) or pv.person_id(raw) is None:
            raise CrmDecodeError("unexpected response: no person in 'data'", method=method,
                                 route=route)
        return (await self._records(crm_object, [raw]))[0]

    async def _org_for(self, changes: PersonChanges) -> int | None:
        """The `org_id` to write for `changes.company` (None: none, or not touched)."""
        name = changes.company.strip() if isinstance(changes.company, str) else ""
        return await self._orgs.named(name) if name else None

    # -- activity ---------------------------------------------------------------------

    async def find_people_by_phone(self, e164: str) -> list[str]:
        """Persons with the number: searched by each form it may be typed in (exact
        digits), every hit confirmed by parsing its phones in the company's country."""
        region = (await self._api.account()).region
        route = f"{PERSONS}/search"
        found: list[str] = []
        for term in pv.search_terms(e164):
            response = await self._api.call("GET", route, search=True, params=[
                ("term", term), ("fields", "phone"), ("exact_match", "true"),
                ("limit", str(SEARCH_LIMIT)),
            ])
            for item in search_items(response, route):
                ident = pv.int_id(item.get("id"))
                phones = item.get("phones")
                if ident is None or not isinstance(phones, list):
                    continue
                if any(isinstance(p, str) and pv.same_number(p, e164, region) for p in phones):
                    found.append(str(ident))
        return list(dict.fromkeys(found))

    async def write_note(self, note: NoteInput) -> str:
        body: dict[str, Any] = {
            "content": note_html(note.title, note.markdown),
            "person_id": int(note.person_id),
        }
        if added := pv.v1_time(note.created_at):
            body["add_time"] = added
        # Not retried once sent (a POST): a note whose answer was lost would be written
        # twice; the activity logger finds it by its marker instead.
        response = await self._api.call("POST", "/v1/notes", json=body)
        return str(created_id(response, "POST", "/v1/notes"))

    async def delete_note(self, note_id: str) -> None:
        with contextlib.suppress(CrmNotFoundError):  # already gone: the goal
            await self._api.call("DELETE", f"/v1/notes/{note_id}", route="/v1/notes/{id}")

    async def find_note_ids(self, crm_object: str, person_id: str, marker: str) -> list[str]:
        """Ids of the person's notes whose HTML contains `marker` (not as a prefix).

        Used after a crash between "about to write a note" and "note id saved", so it
        pages through every note of the person; that is rare and people have few notes.
        """
        pattern = re.compile(re.escape(marker) + r"(?![\w-])")
        found: list[str] = []
        start = 0
        while True:
            response = await self._api.call("GET", "/v1/notes", params=[
                ("person_id", person_id), ("start", str(start)),
                ("limit", str(NOTES_PAGE_SIZE)),
            ])
            notes = data_list(response, "GET", "/v1/notes", null_is_empty=True)
            for note in notes:
                ident = pv.int_id(note.get("id"))
                if ident is not None and pattern.search(str(note.get("content") or "")):
                    found.append(str(ident))
            following = next_start(response, start + len(notes))
            if not notes or following is None or following <= start:
                return found
            start = following

    # -- webhooks ---------------------------------------------------------------------

    async def ensure_webhook(self, target_url: str) -> tuple[str, str | None]:
        """Reuse our webhook for `target_url` or create it; the secret is derived from
        the API key and the URL (`pipedrive_webhooks.py`), so both cases return it."""
        creds = credentials(self._api_key, target_url)
        listed = await self._api.call("GET", "/v1/webhooks")
        plan = plan_hooks(data_list(listed, "GET", "/v1/webhooks", null_is_empty=True),
                          target_url, creds.user)
        for webhook_id in plan.delete:
            with contextlib.suppress(CrmNotFoundError):  # already gone: the goal
                await self._api.call("DELETE", f"/v1/webhooks/{webhook_id}",
                                     route="/v1/webhooks/{id}")
        if plan.keep is not None:
            return plan.keep, creds.secret
        created = await self._api.call("POST", "/v1/webhooks", json={
            "subscription_url": target_url,
            "event_action": "*",
            # Only persons: organization or deal events would look like person ids.
            "event_object": "person",
            "version": "2.0",
            "name": "crmsync",
            # Deliveries cover what this user can see: the API key's own user.
            "user_id": (await self._api.account()).user_id,
            "http_auth_user": creds.user,
            "http_auth_password": creds.password,
        })
        return str(created_id(created, "POST", "/v1/webhooks")), creds.secret

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, secret: str, *, method: str = "POST",
        url: str = "",
    ) -> None:
        """Pipedrive signs nothing: the delivery's Basic credentials must be `secret`."""
        check_basic_auth(headers, secret)

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        return parse_event(body)


def _live(raws: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Listings leave deleted persons out; one marked deleted all the same (Pipedrive
    keeps them 30 days) is no person to sync, and its absence is no deletion either."""
    return [raw for raw in raws if raw.get("is_deleted") is not True]
