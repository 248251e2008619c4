"""Attio (REST v2) adapter.

Paging: `POST /objects/{object}/records/query` returns only `data` (no cursor, no
total), so the cursor is the offset and only an empty page ends the listing (a page
cut short mid-listing must not end a sync early); a stable sort (creation time, then
record id, both descending: the newest people, a company's active customers, reach Quo
first) keeps offsets meaningful. A person created during the listing lands above the
offset: the listing does not see it, its webhook (or the next poll) does; records
already listed may shift below the offset and come again, which the content hash makes
free. Attio cannot filter by update time (`changed_since_cursor` is None): a poll is a
full re-scan. A page that comes back as the very page before it
(a stale listing) is asked for again, a few times, then is an error: paging on would
move the cursor past records never seen. Every attribute is a list of
historical values: the current one has `active_until: null`. Company names are
resolved once per page with a single `record_id $in` query and cached.

Person writes (`update_person`, `create_person`) send `{"data": {"values": ...}}`
(`attio_values.py`): PATCH when only single-value attributes change, PUT when the
emails or phones are replaced (PATCH would add to them). A company is written as a
reference to the oldest company record of that name, created when there is none.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Unpack

import aiohttp

from crmsync.adapters.attio_values import person_values, replaces_lists
from crmsync.adapters.base import (
    CrmChange,
    CrmPage,
    CrmRecord,
    NoteInput,
    Person,
    PersonChanges,
    PersonEmail,
    PersonPhone,
    WebhookEvent,
    WebhookFormatError,
    WebhookSignatureError,
)
from crmsync.adapters.errors import CrmDecodeError, CrmNotFoundError
from crmsync.adapters.http import HttpOptions, crm_transport
from crmsync.adapters.lru import remember
from crmsync.net.ratelimit import Limits

DEFAULT_BASE_URL = "https://api.attio.com/v2"
#: Attio's documented limits per token: 100 reads and 25 writes per second
LIMITS = Limits(rate=100, write_rate=25)
COMPANY_CACHE_SIZE = 50_000
NOTES_PAGE_SIZE = 50  # the most GET /v2/notes returns per page
WEBHOOK_PAGE_SIZE = 100
WEBHOOK_EVENTS = ("record.created", "record.updated", "record.deleted", "record.merged")
#: how often a page answered with the page before it is asked for before giving up
REPEATED_PAGE_TRIES = 3


def _active(values: Any) -> list[dict[str, Any]]:
    if not isinstance(values, list):
        return []
    return [v for v in values if isinstance(v, dict) and v.get("active_until") is None]


def _first_active(values: Any) -> dict[str, Any]:
    active = _active(values)
    return active[0] if active else {}


def _record_id(raw: dict[str, Any]) -> str | None:
    ident = raw.get("id")
    record_id = ident.get("record_id") if isinstance(ident, dict) else None
    return record_id if isinstance(record_id, str) else None


def _values(raw: dict[str, Any]) -> dict[str, Any]:
    """The record's attributes; a `values` that is not an object has none we can read."""
    values = raw.get("values")
    return values if isinstance(values, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _data(response: Any) -> Any:
    """What Attio wraps every answer's payload in: `{"data": ...}` (None if absent)."""
    return response.get("data") if isinstance(response, dict) else None


def _data_list(response: Any, method: str, route: str) -> list[dict[str, Any]]:
    """The objects of a list answer. An answer without a `data` list is a
    `CrmDecodeError`, not an empty list: that would end a listing early, find no person
    for a call, or no note where there is one (and write it again)."""
    data = _data(response)
    if not isinstance(data, list):
        raise CrmDecodeError("unexpected response: no 'data' list", method=method, route=route)
    return [item for item in data if isinstance(item, dict)]


def _id_of(item: Any, key: str, method: str, route: str) -> str:
    """`item["id"][key]`: the id of what Attio created or listed, else a `CrmDecodeError`."""
    ident = item.get("id") if isinstance(item, dict) else None
    value = ident.get(key) if isinstance(ident, dict) else None
    if not isinstance(value, str):
        raise CrmDecodeError(f"unexpected response: no string 'id.{key}'", method=method,
                             route=route)
    return value


class AttioAdapter:
    """`CrmAdapter` for Attio."""

    name = "attio"
    webhooks_by_api = True
    changes_lag = 0.0

    def __init__(
        self, session: aiohttp.ClientSession, *, api_key: str, **options: Unpack[HttpOptions]
    ) -> None:
        self._http = crm_transport(
            session, api=self.name, api_key=api_key, limits=LIMITS,
            headers={"Authorization": f"Bearer {api_key}"}, default_base_url=DEFAULT_BASE_URL,
            **options,
        )
        self._companies: OrderedDict[str, str | None] = OrderedDict()
        self._object_ids: dict[str, str] = {}  # slug → Attio object UUID
        #: per object, the offset and record ids of the page fetched last
        self._last_page: dict[str, tuple[int, list[str | None]]] = {}

    # -- reading people ---------------------------------------------------------------

    async def _query(self, crm_object: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        # records/query is a POST but counts as a read.
        path = f"/objects/{crm_object}/records/query"
        response = await self._http.call("POST", path, json=body, read=True)
        return _data_list(response, "POST", path)

    async def _resolve_companies(self, raws: list[dict[str, Any]]) -> None:
        wanted: set[str] = set()
        for raw in raws:
            ref = _first_active(_values(raw).get("company"))
            target = ref.get("target_record_id")
            if isinstance(target, str) and target not in self._companies:
                wanted.add(target)
        if not wanted:
            return
        found = await self._query(
            "companies",
            {"filter": {"record_id": {"$in": sorted(wanted)}}, "limit": len(wanted)},
        )
        for company in found:
            record_id = _record_id(company)
            name = _str(_first_active(_values(company).get("name")).get("value"))
            if record_id is not None:
                self._remember_company(record_id, name)
        for missing in wanted - set(self._companies):
            self._remember_company(missing, None)

    def _remember_company(self, record_id: str, name: str | None) -> None:
        remember(self._companies, record_id, name, COMPANY_CACHE_SIZE)

    def _to_records(self, crm_object: str, raws: list[dict[str, Any]]) -> list[CrmRecord]:
        records = []
        for raw in raws:
            record_id = _record_id(raw)
            if record_id is None:
                continue
            related: dict[str, str] = {}
            ref = _first_active(_values(raw).get("company"))
            name = self._companies.get(str(ref.get("target_record_id")))
            if name:
                related["company"] = name
            records.append(
                CrmRecord(crm_object=crm_object, record_id=record_id, raw=raw, related=related)
            )
        return records

    async def fetch_page(self, crm_object: str, cursor: str | None, page_size: int) -> CrmPage:
        offset = int(cursor or 0)
        if offset == 0:
            self._companies.clear()  # a new pass: pick up renamed companies
        raws = await self._listing_page(crm_object, offset, page_size)
        await self._resolve_companies(raws)
        # Only an empty page ends the listing: a short one may be cut short (records
        # filtered after the limit, a hiccup), and stopping there would leave every
        # record after it to a later pass, or to none if it comes back short each time.
        # The cost is one more (empty) read per pass.
        next_cursor = str(offset + len(raws)) if raws else None
        return CrmPage(records=self._to_records(crm_object, raws), next_cursor=next_cursor)

    async def _listing_page(
        self, crm_object: str, offset: int, page_size: int
    ) -> list[dict[str, Any]]:
        """The page at `offset`, asked for again while it repeats the page fetched last
        (at another offset): taking it would skip the page that was asked for."""
        body = {
            "limit": page_size,
            "offset": offset,
            "sorts": [
                {"attribute": "created_at", "direction": "desc"},
                {"attribute": "record_id", "direction": "desc"},
            ],
        }
        for _ in range(REPEATED_PAGE_TRIES):
            raws = await self._query(crm_object, body)
            ids = [_record_id(raw) for raw in raws]
            last_offset, last_ids = self._last_page.get(crm_object, (offset, []))
            if not ids or last_offset == offset or ids != last_ids:
                self._last_page[crm_object] = (offset, ids)
                return raws
        path = f"/objects/{crm_object}/records/query"
        raise CrmDecodeError(
            f"unexpected response: offset {offset} kept answering the page before it"
            f" (offset {last_offset})", method="POST", route=path,
        )

    def changed_since_cursor(self, crm_object: str, since: float) -> str | None:
        return None  # records carry no update time (crm-apis.md §1.1)

    async def fetch_by_ids(self, crm_object: str, ids: Sequence[str]) -> list[CrmRecord]:
        if not ids:
            return []
        raws = await self._query(
            crm_object, {"filter": {"record_id": {"$in": list(ids)}}, "limit": len(ids)}
        )
        await self._resolve_companies(raws)
        return self._to_records(crm_object, raws)

    async def fetch_one(self, crm_object: str, record_id: str) -> CrmRecord | None:
        """The record, or None only when Attio answers 404.

        None makes the caller delete the record's Quo contact, so any other answer that
        is not a record (a 204, `{"data": null}`, a list) is a `CrmDecodeError`: the
        change is retried, never taken for a deletion.
        """
        path = f"/objects/{crm_object}/records/{record_id}"
        try:
            response = await self._http.call("GET", path)
        except CrmNotFoundError:
            return None
        raw = response.get("data") if isinstance(response, dict) else None
        if not isinstance(raw, dict) or _record_id(raw) is None:
            raise CrmDecodeError("unexpected response: no record in 'data'", method="GET",
                                 route=path)
        await self._resolve_companies([raw])
        return self._to_records(crm_object, [raw])[0]

    def to_person(self, record: CrmRecord) -> Person:
        values = _values(record.raw)
        name = _first_active(values.get("name"))
        emails = tuple(
            PersonEmail(label="work" if i == 0 else "other", value=email)
            for i, item in enumerate(_active(values.get("email_addresses")))
            if (email := _str(item.get("email_address")))
        )
        phones = tuple(
            PersonPhone(
                label="mobile" if i == 0 else "other",
                raw=_str(item.get("original_phone_number")) or "",
                # The spec calls the E.164 form `phone_number`, the docs page
                # `normalized_phone_number`: read both.
                e164=_str(item.get("phone_number")) or _str(item.get("normalized_phone_number")),
                country_code=_str(item.get("country_code")),
            )
            for i, item in enumerate(_active(values.get("phone_numbers")))
        )
        return Person(
            crm_object=record.crm_object,
            record_id=record.record_id,
            first_name=_str(name.get("first_name")),
            last_name=_str(name.get("last_name")),
            full_name=_str(name.get("full_name")),
            emails=emails,
            phones=phones,
            job_title=_str(_first_active(values.get("job_title")).get("value")),
            company=record.related.get("company"),
            web_url=_str(record.raw.get("web_url")),
        )

    # -- writing people ---------------------------------------------------------------

    async def update_person(
        self, crm_object: str, record_id: str, changes: PersonChanges
    ) -> CrmRecord:
        method = "PUT" if replaces_lists(changes) else "PATCH"
        path = f"/objects/{crm_object}/records/{record_id}"
        values = person_values(changes, await self._company_for(changes))
        # Idempotent: the values are set, not added to (lists go by PUT).
        response = await self._http.call(
            method, path, json={"data": {"values": values}},
            route="/objects/{object}/records/{id}", idempotent=True,
        )
        return await self._written(crm_object, response, method, path)

    async def create_person(self, crm_object: str, changes: PersonChanges) -> CrmRecord:
        path = f"/objects/{crm_object}/records"
        values = person_values(changes, await self._company_for(changes))
        # Not retried once sent: a create whose answer was lost would be made twice.
        response = await self._http.call(
            "POST", path, json={"data": {"values": values}}, route="/objects/{object}/records",
        )
        return await self._written(crm_object, response, "POST", path)

    async def _written(
        self, crm_object: str, response: Any, method: str, path: str
    ) -> CrmRecord:
        raw = _data(response)
        if not isinstance(raw, dict) or _record_id(raw) is None:
            raise CrmDecodeError("unexpected response: no record in 'data'", method=method,
                                 route=path)
        await self._resolve_companies([raw])
        return self._to_records(crm_object, [raw])[0]

    async def _company_for(self, changes: PersonChanges) -> str | None:
        """The record id of the company `changes` names (None: none, or not touched)."""
        name = changes.company.strip() if isinstance(changes.company, str) else ""
        if not name:
            return None
        found = await self._query("companies", {
            "filter": {"name": name}, "limit": 1,
            "sorts": [{"attribute": "created_at", "direction": "asc"}],
        })
        company_id = _record_id(found[0]) if found else None
        if company_id is None:
            path = "/objects/companies/records"
            created = await self._http.call(
                "POST", path, json={"data": {"values": {"name": name}}},
                route="/objects/{object}/records",
            )
            company_id = _id_of(_data(created), "record_id", "POST", path)
        self._remember_company(company_id, name)
        return company_id

    # -- activity and webhooks --------------------------------------------------------

    async def find_people_by_phone(self, e164: str) -> list[str]:
        raws = await self._query("people", {"filter": {"phone_numbers": e164}, "limit": 10})
        return [record_id for r in raws if (record_id := _record_id(r)) is not None]

    async def write_note(self, note: NoteInput) -> str:
        data: dict[str, Any] = {
            "parent_object": note.crm_object,
            "parent_record_id": note.person_id,
            "title": note.title,
            "format": "markdown",
            "content": note.markdown,
        }
        if note.created_at:
            data["created_at"] = note.created_at
        response = await self._http.call("POST", "/notes", json={"data": data})
        return _id_of(_data(response), "note_id", "POST", "/notes")

    async def delete_note(self, note_id: str) -> None:
        try:
            await self._http.call("DELETE", f"/notes/{note_id}")
        except CrmNotFoundError:
            return

    async def find_note_ids(self, crm_object: str, person_id: str, marker: str) -> list[str]:
        """Ids of the person's notes whose content contains `marker` (not as a prefix).

        Used after a crash between "about to write a note" and "note id saved", so it
        pages through every note of the person; that is rare and people have few notes.
        """
        pattern = re.compile(re.escape(marker) + r"(?![\w-])")
        found: list[str] = []
        offset = 0
        while True:
            response = await self._http.call("GET", "/notes", params=[
                ("parent_object", crm_object), ("parent_record_id", person_id),
                ("limit", str(NOTES_PAGE_SIZE)), ("offset", str(offset)),
            ])
            notes = _data_list(response, "GET", "/notes")
            for note in notes:
                content = "\n".join(
                    str(note.get(key) or "") for key in ("content_markdown", "content_plaintext")
                )
                ident = note.get("id")
                note_id = ident.get("note_id") if isinstance(ident, dict) else None
                if isinstance(note_id, str) and pattern.search(content):
                    found.append(note_id)
            if len(notes) < NOTES_PAGE_SIZE:
                return found
            offset += len(notes)

    async def _webhooks(self) -> AsyncIterator[dict[str, Any]]:
        """Every webhook of the workspace (listed 100 at a time; Attio's default is 10)."""
        offset = 0
        while True:
            listed = await self._http.call(
                "GET", "/webhooks",
                params=[("limit", str(WEBHOOK_PAGE_SIZE)), ("offset", str(offset))],
            )
            page = _data_list(listed, "GET", "/webhooks")
            for hook in page:
                yield hook
            if len(page) < WEBHOOK_PAGE_SIZE:
                return
            offset += len(page)

    async def object_id(self, slug: str) -> str:
        """The UUID of an object (webhook payloads name objects by UUID, not slug)."""
        if slug not in self._object_ids:
            path = f"/objects/{slug}"
            response = await self._http.call("GET", path)
            self._object_ids[slug] = _id_of(_data(response), "object_id", "GET", path)
        return self._object_ids[slug]

    async def ensure_webhook(self, target_url: str) -> tuple[str, str | None]:
        """Reuse our webhook for `target_url` or create it; the secret comes only on create.

        One Attio has deactivated (`status: inactive`, after its deliveries kept failing)
        receives nothing any more: it is deleted and a new one created in its place.
        """
        inactive: list[str] = []
        async for hook in self._webhooks():
            if hook.get("target_url") == target_url:
                webhook_id = _id_of(hook, "webhook_id", "GET", "/webhooks")
                if hook.get("status") != "inactive":
                    return webhook_id, None
                inactive.append(webhook_id)
        for webhook_id in inactive:  # after the listing: deleting shifts its offsets
            with contextlib.suppress(CrmNotFoundError):  # already gone: the goal
                await self._http.call("DELETE", f"/webhooks/{webhook_id}",
                                      route="/webhooks/{id}")
        # Only people: company or deal events would otherwise look like person ids.
        people_only = {"$and": [{
            "field": "id.object_id", "operator": "equals", "value": await self.object_id("people"),
        }]}
        created = await self._http.call(
            "POST",
            "/webhooks",
            json={
                "data": {
                    "target_url": target_url,
                    "subscriptions": [
                        {"event_type": e, "filter": people_only} for e in WEBHOOK_EVENTS
                    ],
                }
            },
        )
        data = _data(created)
        webhook_id = _id_of(data, "webhook_id", "POST", "/webhooks")
        secret = data.get("secret")  # a dict: _id_of found the id in it
        if secret is not None and not isinstance(secret, str):
            raise CrmDecodeError("unexpected response: 'secret' is not a string",
                                 method="POST", route="/webhooks")
        return webhook_id, secret

    def verify_webhook(
        self, headers: Mapping[str, str], body: bytes, secret: str, *, method: str = "POST",
        url: str = "",
    ) -> None:
        """Attio signs the raw body: hex HMAC-SHA256 with the webhook secret, no timestamp."""
        given = headers.get("Attio-Signature") or headers.get("X-Attio-Signature") or ""
        # compare_digest raises on non-ASCII str; hex is ASCII, so anything else is wrong.
        if not given or not given.isascii():
            raise WebhookSignatureError("Attio-Signature missing or not hex")
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
            raise WebhookSignatureError("Attio-Signature does not match")

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        """`{"webhook_id", "events": [{"event_type", "id": {"record_id", ...}}]}`."""
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
            raise WebhookFormatError("body is not JSON") from exc
        events = payload.get("events") if isinstance(payload, dict) else None
        if not isinstance(events, list) or not events:
            raise WebhookFormatError("no 'events' list in the Attio payload")
        changes: list[CrmChange] = []
        for event in events:
            if not isinstance(event, dict) or not isinstance(event.get("id"), dict):
                raise WebhookFormatError("an Attio event without an 'id' object")
            event_type = str(event.get("event_type", ""))
            record_id = event["id"].get("record_id")
            people = self._object_ids.get("people")
            if (
                not event_type.startswith("record.")
                or not isinstance(record_id, str)
                or (people is not None and event["id"].get("object_id") not in (None, people))
            ):
                continue  # note.*, list-entry.*, other objects: nothing for contacts
            changes.append(CrmChange(
                crm_object="people",
                record_id=record_id,
                kind=event_type.removeprefix("record."),
                merged_from=event.get("duplicate_record_id"),
            ))
        # The id is the signed body's hash, not Attio's Idempotency-Key: that header is not
        # signed, so a replayed capture with a new key would be stored again. Attio's
        # retries resend the same bytes, so a retry is still a duplicate.
        event_id = hashlib.sha256(body).hexdigest()
        return WebhookEvent(
            event_id=event_id, event_type=str(events[0].get("event_type", "")), changes=changes
        )
