"""CRM person → Metakocka partner, exactly once (issue 12 item 3).

`MetakockaPush.push_record` brings one CRM person's partner up to date:

* the person's partner fields (`domain/partner.py`) hash as the pair's `crm_hash`:
  unchanged → no Metakocka call at all (the pair is only touched);
* paired and changed → the partner is read, merged with what Metakocka holds (the
  tenant's `conflict` rule on fields changed on both sides) and `update_partner` sends
  only the differing fields (none → no write);
* not paired → the lookups of `lookup_filters` in order (tax number, email, phone,
  name), each candidate checked exactly (`pick`: `get_partner` matches names by
  substring); a match is linked (and brought up to date), else `add_partner` runs
  under an intent (`store.mk_intents`): begun before the call, settled with the pair.
  An intent still open at the next attempt (a crash, a connection dropped after
  Metakocka applied the add) means the partner may exist: the lookups run again and
  find it, so it is never added twice.
  A company's partner holds one contact per person: a contact already paired with
  someone else (a colleague of the same name, a shared switchboard phone) is never the
  person's, so who is pushed first does not decide who gets which contact.

Every failure is a dead letter (`metakocka_<category>`, §9 categories) and a failed
`PushResult`; an `add_partner` whose answer was lost keeps its intent open.

`MetakockaPusher` is the tenant's actor that drives this from the Quo pipeline without
holding it up: it sweeps the Quo mappings written since its last sweep whose pair is
older (or missing) and pushes those people, on its own schedule and within
Metakocka's limits. Nothing is lost across a restart: the first sweep of a process
starts from the beginning, and the hashes make every person already in step cost no
Metakocka call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Final, Literal, TypeVar

import msgspec

from crmsync import metrics
from crmsync.adapters.base import CrmAdapter, CrmRecord
from crmsync.domain.partner import (
    Company,
    Conflict,
    PartnerError,
    PartnerFields,
    contact_for,
    decode,
    encode,
    fields_from_partner,
    fields_hash,
    lookup_filters,
    merge,
    partner_fields,
    partner_input,
    partner_update,
    pick,
    same_name,
    same_person_name,
)
from crmsync.metakocka.client import MetakockaClient
from crmsync.metakocka.models import Partner
from crmsync.net.errors import ApiError
from crmsync.net.ratelimit import Lane
from crmsync.store import Store
from crmsync.store.metakocka import MkLink

log = logging.getLogger(__name__)

T = TypeVar("T")
PushAction = Literal["created", "linked", "updated", "unchanged", "failed"]
SWEEP_INTERVAL: Final = 2.0  # seconds between sweeps of the Quo mappings
SWEEP_BATCH: Final = 100  # people fetched from the CRM per request
SWEEP_SLACK: Final = 5.0  # seconds a sweep looks back for mappings committed late


class PushResult(msgspec.Struct, frozen=True, kw_only=True):
    """One record's outcome (the management API's per-id result)."""

    crm_record_id: str
    ok: bool
    action: PushAction
    mk_id: str | None = None
    error_category: str | None = None
    error: str | None = None


def same_party(partner: Partner, fields: PartnerFields) -> bool:
    """The partner carries the person's party name: the company's, or the person's."""
    if fields.business_entity:
        return same_name(partner.customer, fields.customer)
    return same_person_name(partner.customer, fields.customer)


def conflict_rule(tenant_conflict: str) -> Conflict:
    """The tenant's `conflict` (`crm_wins` | `quo_wins`): the other side wins unless
    the CRM does."""
    return "crm_wins" if tenant_conflict == "crm_wins" else "metakocka_wins"


class PersonLocks:
    """One lock per person, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, list[int]]] = {}
        #: lookups and creates one at a time: two colleagues pushed at once must not
        #: both find no company partner and both add it
        self.create = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]


class MetakockaCalls:
    """The tenant's Metakocka client, every call counted in
    `crmsync_metakocka_calls_total{tenant,endpoint,outcome}`."""

    def __init__(self, tenant: str, client: MetakockaClient) -> None:
        self.tenant = tenant
        self.client = client

    async def call(self, endpoint: str, call: Awaitable[T]) -> T:
        try:
            result = await call
        except ApiError as exc:
            metrics.metakocka_calls.labels(self.tenant, endpoint, exc.category).inc()
            raise
        metrics.metakocka_calls.labels(self.tenant, endpoint, "ok").inc()
        return result


class MetakockaPush:
    def __init__(
        self,
        tenant: str,
        *,
        calls: MetakockaCalls,
        adapter: CrmAdapter,
        store: Store,
        default_country: str,
        conflict: Conflict,
        lane: Lane = Lane.BACKFILL,
        locks: PersonLocks | None = None,
    ) -> None:
        self.tenant = tenant
        self._mk = calls
        self._client = calls.client
        self._adapter = adapter
        self._store = store
        self._country = default_country
        self._conflict = conflict
        self._lane = lane
        # One push per person at a time: share `locks` between every MetakockaPush of
        # the tenant (the sweep's and the API's may meet on one person).
        self._locks = locks or PersonLocks()

    # -- entry points -------------------------------------------------------------------

    async def push_ids(self, crm_object: str, record_ids: Sequence[str]) -> list[PushResult]:
        """Fetch and push these people; an id the CRM does not have fails `not_found`."""
        results: list[PushResult] = []
        ids = list(dict.fromkeys(record_ids))
        for start in range(0, len(ids), SWEEP_BATCH):
            chunk = ids[start : start + SWEEP_BATCH]
            try:
                fetched = {r.record_id: r for r in await self._adapter.fetch_by_ids(
                    crm_object, chunk)}
            except ApiError as exc:
                results.extend(PushResult(crm_record_id=i, ok=False, action="failed",
                                          error_category=exc.category, error=str(exc))
                               for i in chunk)
                continue
            for record_id in chunk:
                record = fetched.get(record_id)
                if record is None:
                    results.append(PushResult(
                        crm_record_id=record_id, ok=False, action="failed",
                        error_category="not_found", error="no such record in the CRM"))
                else:
                    results.append(await self.push_record(record))
        return results

    async def push_record(self, record: CrmRecord) -> PushResult:
        async with self._locks.hold((record.crm_object, record.record_id)):
            return await self._push(record)

    # -- one person ---------------------------------------------------------------------

    async def _push(self, record: CrmRecord) -> PushResult:
        person = self._adapter.to_person(record)
        try:
            fields = partner_fields(person, self._company(record, person.company))
            action, link = await self._sync(record, fields)
        except PartnerError as exc:
            return await self._failed(record, exc.category, str(exc))
        except ApiError as exc:
            return await self._failed(record, exc.category, str(exc))
        except sqlite3.IntegrityError as exc:  # its contact is another person's already
            return await self._failed(record, "conflict", f"partner contact taken: {exc}")
        metrics.metakocka_partners_synced.labels(self.tenant, "to_metakocka", action).inc()
        return PushResult(crm_record_id=record.record_id, ok=True, action=action,
                          mk_id=link.mk_id)

    @staticmethod
    def _company(record: CrmRecord, name: str | None) -> Company | None:
        return Company(name=name) if name else None

    async def _sync(self, record: CrmRecord, fields: PartnerFields) -> tuple[PushAction, MkLink]:
        crm_hash = fields_hash(fields)
        link = await self._store.mk_links.get(self.tenant, record.crm_object, record.record_id)
        if link is not None:
            if link.crm_hash == crm_hash:
                touched = msgspec.structs.replace(link, last_synced_at=time.time())
                await self._store.mk_links.upsert(touched)
                return "unchanged", touched
            if link.mk_contact_id is not None:
                paired = await self._paired(record, fields, link)
                if paired is not None:
                    return paired
            # The partner is gone in Metakocka (or the pair has no contact yet): below.
        async with self._locks.create:
            if link is not None and link.mk_contact_id is None:
                # A pair without its contact yet: the update adds it, a create like the
                # lookups' (one at a time, so the contact it adds is told apart).
                paired = await self._paired(record, fields, link)
                if paired is not None:
                    return paired
            found = await self._lookup(record, fields)
            if found is not None:
                partner, contact_id = found
                return await self._update(record, fields, partner, contact_id, base=None,
                                          linked=True)
            return "created", await self._add(record, fields)

    async def _paired(
        self, record: CrmRecord, fields: PartnerFields, link: MkLink
    ) -> tuple[PushAction, MkLink] | None:
        """The pair brought up to date; None when its partner is gone in Metakocka."""
        partner = await self._mk.call("get_partner", self._client.get_partner(
            link.mk_id, lane=self._lane))
        if partner is None:
            return None
        return await self._update(record, fields, partner, link.mk_contact_id,
                                  base=decode(link.snapshot), linked=False)

    async def _taken(self, record: CrmRecord, mk_id: str) -> set[str]:
        """The partner's contacts paired with people other than `record`."""
        return {x.mk_contact_id for x in await self._store.mk_links.by_mk_id(self.tenant, mk_id)
                if x.mk_contact_id is not None
                and (x.crm_object, x.crm_record_id) != (record.crm_object, record.record_id)}

    async def _lookup(
        self, record: CrmRecord, fields: PartnerFields
    ) -> tuple[Partner, str | None] | None:
        """The partner that already is this person (exact matches only), and its
        contact that is the person. A contact already paired with another person is
        not this one: a company's partner then is the person's through another of its
        contacts, or gets a new one; a private partner is someone else's."""
        for by, value in lookup_filters(fields):
            kwargs = {"tax_number" if by == "tax_number" else by: value}
            candidates = await self._mk.call("get_partner", self._client.find_partners(
                lane=self._lane, **kwargs))
            # An email or phone is shared across companies (and people) in real data:
            # only the same name, or the same tax number, is the same party; anything
            # else would rename someone else's partner.
            partner = pick(
                [c for c in candidates if by == "tax_number" or same_party(c, fields)],
                fields, by, default_country=self._country,
            )
            if partner is None:
                continue
            taken = await self._taken(record, partner.mk_id)
            if partner.business_entity:
                # Colleagues share a name or a switchboard phone: the first contact
                # matching may be a colleague's, the person's is one not paired yet.
                contact = contact_for(partner, fields, default_country=self._country,
                                      exclude=taken)
            else:
                contact = contact_for(partner, fields, default_country=self._country)
                if contact is not None and contact.mk_id in taken:
                    continue
            return partner, contact.mk_id if contact else None
        return None

    async def _add(self, record: CrmRecord, fields: PartnerFields) -> MkLink:
        crm_hash = fields_hash(fields)
        await self._store.mk_intents.begin(
            self.tenant, record.crm_object, record.record_id, "add_partner", crm_hash)
        try:
            added = await self._mk.call("add_partner", self._client.add_partner(
                partner_input(fields, default_country=self._country), lane=self._lane))
        except ApiError as exc:
            if exc.category in ("validation", "auth", "conflict", "rate_limited"):
                # Refused: nothing was created, no lookup is owed.
                await self._store.mk_intents.settle(
                    self.tenant, record.crm_object, record.record_id)
            raise
        # What Metakocka now holds, as the rule reads it back (placeholders included).
        written = partner_input(fields, default_country=self._country)
        mk_fields = msgspec.structs.replace(
            fields, street=written.street, post_number=written.post_number,
            city=written.city, country=written.country)
        link = MkLink(
            tenant_id=self.tenant, crm_object=record.crm_object,
            crm_record_id=record.record_id, mk_id=added.mk_id,
            mk_contact_id=added.mk_contact_id,
            mk_address_id=added.address_ids[0] if added.address_ids else None,
            direction="to_metakocka", mk_hash=fields_hash(mk_fields), crm_hash=crm_hash,
            snapshot=encode(fields), last_synced_at=time.time(),
            last_checked_at=time.time(),
        )
        await self._save(link)
        return link

    async def _update(
        self,
        record: CrmRecord,
        fields: PartnerFields,
        partner: Partner,
        contact_id: str | None,
        *,
        base: PartnerFields | None,
        linked: bool,
    ) -> tuple[PushAction, MkLink]:
        mk = fields_from_partner(partner, contact_id=contact_id, default_country=self._country)
        # A partner found by lookup: the CRM's values fill it, it keeps the rest. A
        # pair: fields changed on both sides since the snapshot follow `conflict`.
        wanted = (merge(mk, fields, mk, "crm_wins") if linked
                  else merge(base, fields, mk, self._conflict)).result
        update = partner_update(partner, wanted, contact_id=contact_id,
                                default_country=self._country)
        action: PushAction = "linked" if linked else "unchanged"
        if update is not None:
            if update.adds_something:
                await self._store.mk_intents.begin(
                    self.tenant, record.crm_object, record.record_id, "add_contact",
                    fields_hash(fields), mk_id=partner.mk_id)
            before = {c.mk_id for c in partner.contacts if c.mk_id}
            partner = await self._mk.call("update_partner", self._client.update_partner(
                update, lane=self._lane))
            action = "linked" if linked else "updated"
            if contact_id is None:
                # The contact this update added: none the partner had before (those
                # are not the person, `_lookup` said so) nor one paired meanwhile. The
                # first contact matching could be a colleague's of the same name or
                # phone, whose pair holds it already.
                known = before | await self._taken(record, partner.mk_id)
                contact = contact_for(partner, fields, default_country=self._country,
                                      exclude=known)
                contact_id = contact.mk_id if contact else None
            mk = fields_from_partner(partner, contact_id=contact_id,
                                     default_country=self._country)
        address = next((a.mk_id for a in partner.addresses if a.mk_id), None)
        link = MkLink(
            tenant_id=self.tenant, crm_object=record.crm_object,
            crm_record_id=record.record_id, mk_id=partner.mk_id, mk_contact_id=contact_id,
            mk_address_id=address, direction="to_metakocka", mk_hash=fields_hash(mk),
            crm_hash=fields_hash(fields), snapshot=encode(wanted),
            last_synced_at=time.time(), last_checked_at=time.time(),
        )
        await self._save(link)
        return action, link

    async def _save(self, link: MkLink) -> None:
        async with self._store.transaction():
            existing = await self._store.mk_links.get(
                self.tenant, link.crm_object, link.crm_record_id)
            if existing is not None:
                link = msgspec.structs.replace(link, direction=existing.direction)
            await self._store.mk_links.upsert(link)
            await self._store.mk_intents.settle(self.tenant, link.crm_object,
                                                link.crm_record_id)
            await self._store.mk_unsynced.remove(self.tenant, link.mk_id)

    async def _failed(self, record: CrmRecord, category: str, message: str) -> PushResult:
        log.warning("metakocka push of %s failed (%s): %s", record.record_id, category, message)
        await self._store.dead_letters.add(
            self.tenant, record.crm_object, record.record_id,
            f"metakocka_{category}", "", message)
        metrics.metakocka_partners_synced.labels(self.tenant, "to_metakocka", "failed").inc()
        return PushResult(crm_record_id=record.record_id, ok=False, action="failed",
                          error_category=category, error=message)


# -- the actor ------------------------------------------------------------------------------

_DUE: Final = (
    "SELECT m.crm_object, m.crm_record_id, m.last_synced_at FROM mappings AS m"
    " LEFT JOIN mk_links AS l ON l.tenant_id = m.tenant_id AND l.crm_object = m.crm_object"
    " AND l.crm_record_id = m.crm_record_id"
    " WHERE m.tenant_id = ? AND m.deleted_at IS NULL AND m.entity_type = 'person'"
    " AND m.last_synced_at > ? AND (l.crm_record_id IS NULL"
    " OR l.last_synced_at < m.last_synced_at)"
    " ORDER BY m.last_synced_at, m.id LIMIT ?"
)


class MetakockaPusher:
    """The tenant's CRM → Metakocka actor (module docstring): sweeps the Quo mappings
    written since the last sweep and pushes their people, one at a time."""

    name = "metakocka_push"

    def __init__(
        self,
        tenant: str,
        *,
        push: MetakockaPush,
        due: Callable[[str, float, int], Awaitable[list[tuple[str, str, float]]]],
        interval: float = SWEEP_INTERVAL,
    ) -> None:
        self.tenant = tenant
        self._push = push
        self._due = due
        self._interval = interval
        self._since = -1.0  # a new process starts from the beginning
        self.wake = asyncio.Event()

    async def start(self) -> None:
        while True:
            await self.sweep()
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self._interval)

    async def sweep(self) -> int:
        """Push every person whose Quo mapping is newer than their pair; how many."""
        pushed = 0
        since = self._since
        while True:
            due = await self._due(self.tenant, since, SWEEP_BATCH)
            by_object: dict[str, list[str]] = {}
            for crm_object, record_id, _ in due:
                by_object.setdefault(crm_object, []).append(record_id)
            for crm_object, ids in by_object.items():
                pushed += len(await self._push.push_ids(crm_object, ids))
            if not due:
                return pushed
            # Failures keep their older pair: the sweep moves past them (they come back
            # when the record is written again, or in the next process). A mapping
            # committed late with an earlier time is caught by the slack.
            since = due[-1][2]
            self._since = max(self._since, since - SWEEP_SLACK)


def due_query(store: Store) -> Callable[[str, float, int], Awaitable[list[tuple[str, str, float]]]]:
    """The sweep's query on the state database (read-only; mappings ⟕ mk_links)."""
    db = store._db

    async def due(tenant: str, since: float, limit: int) -> list[tuple[str, str, float]]:
        rows = await db.fetchall(_DUE, (tenant, since, limit))
        return [(str(r["crm_object"]), str(r["crm_record_id"]), float(r["last_synced_at"]))
                for r in rows]

    return due
