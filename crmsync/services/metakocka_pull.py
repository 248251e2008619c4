"""Metakocka partner → CRM person (issue 12 item 4).

* `MetakockaPull.pull_partner`: one partner re-read (`get_partner`) and, for each CRM
  person paired with it, its fields (that person's contact) compared with the pair:
  the same hash as crmsync last wrote or saw (`mk_hash`) → nothing (crmsync's own write
  coming back is no change); otherwise merged with the CRM person against the pair's
  snapshot (the tenant's `conflict` rule for fields changed on both sides) and only
  what differs from the person is written (`adapter.update_person`); equal values make
  no CRM call. A partner not paired yet is imported: a new CRM person
  (`adapter.create_person`, with its company), paired; the normal CRM → Quo path takes
  it to Quo from there.
* `MetakockaPull.discover`: pages `search_documents` of each `discover_from` type from
  its watermark (`store.mk_discovery`); partners not paired are listed unsynced
  (`store.mk_unsynced`), or imported with `auto_import`.
* `MetakockaPoller`: the tenant's actor: linked partners due (`mk_links.due`, not
  re-read for `poll_interval`), then discovery, every `poll_interval`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Final, Literal

import msgspec

from crmsync import metrics
from crmsync.adapters.base import CrmAdapter, PersonChanges
from crmsync.domain.partner import (
    Company,
    Conflict,
    PartnerFields,
    decode,
    encode,
    fields_from_partner,
    fields_hash,
    merge,
    new_person,
    partner_fields,
    person_changes,
)
from crmsync.metakocka.models import Partner
from crmsync.net.errors import ApiError
from crmsync.net.ratelimit import Lane
from crmsync.services.metakocka_push import MetakockaCalls
from crmsync.store import Store
from crmsync.store.metakocka import MkLink

log = logging.getLogger(__name__)

PullAction = Literal["updated", "unchanged", "imported", "listed", "failed"]
DUE_BATCH: Final = 100
MAX_PAGES: Final = 50  # document pages per type and round (the rest: next round)


class PullResult(msgspec.Struct, frozen=True, kw_only=True):
    """One partner's outcome (the management API's per-id result)."""

    mk_id: str
    ok: bool
    action: PullAction
    crm_record_ids: tuple[str, ...] = ()
    error_category: str | None = None
    error: str | None = None


class MetakockaPull:
    def __init__(
        self,
        tenant: str,
        *,
        calls: MetakockaCalls,
        adapter: CrmAdapter,
        store: Store,
        crm_object: str,
        default_country: str,
        conflict: Conflict,
        discover_from: Sequence[str] = (),
        auto_import: bool = False,
        lane: Lane = Lane.BACKFILL,
    ) -> None:
        self.tenant = tenant
        self._mk = calls
        self._client = calls.client
        self._adapter = adapter
        self._store = store
        self._crm_object = crm_object
        self._country = default_country
        self._conflict = conflict
        self._discover_from = tuple(discover_from)
        self._auto_import = auto_import
        self._lane = lane

    # -- partners -----------------------------------------------------------------------

    async def pull_ids(self, mk_ids: Sequence[str]) -> list[PullResult]:
        """Pull these partners now (import the ones not paired)."""
        return [await self.pull_partner(mk_id, import_new=True)
                for mk_id in dict.fromkeys(mk_ids)]

    async def pull_partner(self, mk_id: str, *, import_new: bool) -> PullResult:
        try:
            partner = await self._mk.call("get_partner", self._client.get_partner(
                mk_id, lane=self._lane))
            links = await self._store.mk_links.by_mk_id(self.tenant, mk_id)
            if partner is None:
                await self._store.mk_links.mark_checked(self.tenant, mk_id, time.time())
                return await self._failed(mk_id, "not_found", "no such partner in Metakocka")
            if not links:
                if not import_new:
                    return PullResult(mk_id=mk_id, ok=True, action="listed")
                return await self._import(partner)
            actions = [await self._apply(link, partner) for link in links]
            await self._store.mk_links.mark_checked(self.tenant, mk_id, time.time())
        except ApiError as exc:
            return await self._failed(mk_id, exc.category, str(exc))
        action: PullAction = "updated" if "updated" in actions else "unchanged"
        return PullResult(mk_id=mk_id, ok=True, action=action,
                          crm_record_ids=tuple(link.crm_record_id for link in links))

    async def _apply(self, link: MkLink, partner: Partner) -> PullAction:
        mk = fields_from_partner(partner, contact_id=link.mk_contact_id,
                                 default_country=self._country)
        mk_hash = fields_hash(mk)
        if mk_hash == link.mk_hash:
            return "unchanged"  # nothing changed there since crmsync wrote or read it
        record = await self._adapter.fetch_one(link.crm_object, link.crm_record_id)
        if record is None:
            return "unchanged"  # the person is gone; the CRM path forgets the pair
        person = self._adapter.to_person(record)
        crm = partner_fields(person, Company(name=person.company) if person.company else None)
        base = decode(link.snapshot)
        merged = merge(base, crm, mk, self._conflict).result
        # Only what differs from the person now (`person_changes` against its fields).
        changes = person_changes(person, merged, crm)
        action: PullAction = "unchanged"
        if not changes.is_empty():
            record = await self._adapter.update_person(
                link.crm_object, link.crm_record_id, changes)
            person = self._adapter.to_person(record)
            crm = partner_fields(person, Company(name=person.company) if person.company
                                 else None)
            action = "updated"
        await self._store.mk_links.upsert(msgspec.structs.replace(
            link, mk_hash=mk_hash, crm_hash=fields_hash(crm) if action == "updated"
            else link.crm_hash, snapshot=encode(merged), last_synced_at=time.time(),
            last_checked_at=time.time()))
        metrics.metakocka_partners_synced.labels(self.tenant, "from_metakocka", action).inc()
        return action

    async def _import(self, partner: Partner) -> PullResult:
        contact = partner.contacts[0] if partner.contacts else None
        mk = fields_from_partner(partner, contact_id=contact.mk_id if contact else None,
                                 default_country=self._country)
        changes: PersonChanges = new_person(mk)
        if changes.is_empty():
            return await self._failed(partner.mk_id, "validation", "partner has no name")
        record = await self._adapter.create_person(self._crm_object, changes)
        person = self._adapter.to_person(record)
        crm = partner_fields(person, Company(name=person.company) if person.company else None)
        address = next((a.mk_id for a in partner.addresses if a.mk_id), None)
        now = time.time()
        async with self._store.transaction():
            await self._store.mk_links.upsert(MkLink(
                tenant_id=self.tenant, crm_object=record.crm_object,
                crm_record_id=record.record_id, mk_id=partner.mk_id,
                mk_contact_id=contact.mk_id if contact else None, mk_address_id=address,
                direction="from_metakocka", mk_hash=fields_hash(mk),
                crm_hash=fields_hash(crm), snapshot=encode(_agreed(mk, crm)),
                last_synced_at=now, last_checked_at=now,
            ))
            await self._store.mk_unsynced.remove(self.tenant, partner.mk_id)
        metrics.metakocka_partners_synced.labels(self.tenant, "from_metakocka", "imported").inc()
        return PullResult(mk_id=partner.mk_id, ok=True, action="imported",
                          crm_record_ids=(record.record_id,))

    async def _failed(self, mk_id: str, category: str, message: str) -> PullResult:
        log.warning("metakocka pull of partner %s failed (%s): %s", mk_id, category, message)
        await self._store.dead_letters.add(
            self.tenant, "metakocka_partner", mk_id, f"metakocka_{category}", "", message)
        metrics.metakocka_partners_synced.labels(self.tenant, "from_metakocka", "failed").inc()
        return PullResult(mk_id=mk_id, ok=False, action="failed", error_category=category,
                          error=message)

    # -- the rounds ---------------------------------------------------------------------

    async def pull_due(self, poll_interval: float) -> int:
        """Re-read the paired partners not read for `poll_interval`; how many."""
        done = 0
        cutoff = time.time() - poll_interval  # fixed: re-read ones are past it
        while True:
            due = await self._store.mk_links.due(self.tenant, cutoff, DUE_BATCH)
            for mk_id in due:
                await self.pull_partner(mk_id, import_new=False)
                await self._store.mk_links.mark_checked(self.tenant, mk_id, time.time())
            done += len(due)
            if len(due) < DUE_BATCH:
                return done

    async def discover(self) -> int:
        """Page the `discover_from` documents from their watermarks; partners found."""
        found = 0
        for doc_type in self._discover_from:
            found += await self._discover(doc_type)
        return found

    async def _discover(self, doc_type: str) -> int:
        mark = await self._store.mk_discovery.get(self.tenant, doc_type)
        since = mark.last_change_from if mark else None
        offset = mark.next_offset if mark else 0
        newest = since
        found = 0
        for _ in range(MAX_PAGES):
            page = await self._mk.call("search", self._client.search_documents(
                doc_type, last_change_from=since, offset=offset, lane=self._lane))
            for doc in page.documents:
                if doc.last_change_ts and (newest is None or doc.last_change_ts > newest):
                    newest = doc.last_change_ts
                mk_id = doc.partner_mk_id
                if mk_id and not await self._store.mk_links.by_mk_id(self.tenant, mk_id):
                    found += 1
                    await self._unpaired(mk_id, doc_type)
            offset += len(page.documents)
            if not page.documents or len(page.documents) < page.limit or (
                page.total is not None and offset >= page.total
            ):
                # The search is done: the next one starts from the newest change seen.
                await self._store.mk_discovery.set(
                    self.tenant, doc_type, last_change_from=newest, next_offset=0)
                return found
            await self._store.mk_discovery.set(
                self.tenant, doc_type, last_change_from=since, next_offset=offset)
        return found

    async def _unpaired(self, mk_id: str, doc_type: str) -> None:
        if await self._store.mk_unsynced.get(self.tenant, mk_id) is not None \
                and not self._auto_import:
            await self._store.mk_unsynced.upsert(self.tenant, mk_id, doc_type=doc_type)
            return
        partner = await self._mk.call("get_partner", self._client.get_partner(
            mk_id, lane=self._lane))
        if partner is None:
            return
        if self._auto_import:
            await self._import(partner)
            return
        contact = partner.contacts[0] if partner.contacts else None
        await self._store.mk_unsynced.upsert(
            self.tenant, mk_id, name=partner.customer,
            email=contact.email if contact else None,
            phone=(contact.gsm or contact.phone) if contact else None, doc_type=doc_type)


def _agreed(mk: PartnerFields, crm: PartnerFields) -> PartnerFields:
    """The snapshot of a fresh pair: Metakocka's values, the CRM's where it has more."""
    return merge(mk, crm, mk, "metakocka_wins").result


class MetakockaPoller:
    """The tenant's Metakocka → CRM actor: due partners, then discovery, every
    `poll_interval` (and at start)."""

    name = "metakocka_pull"

    def __init__(self, pull: MetakockaPull, *, poll_interval: float) -> None:
        self._pull = pull
        self._interval = poll_interval

    async def start(self) -> None:
        while True:
            try:
                await self._pull.pull_due(self._interval)
                await self._pull.discover()
            except ApiError as exc:  # Metakocka unreachable: the next round retries
                log.warning("metakocka poll round failed (%s): %s", exc.category, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.Event().wait(), self._interval)
