"""`Portal`: a HubSpot portal's objects and every change to them, API and app alike.

Every change of a contact, through the API or "in the app", goes through `create` /
`update` / `archive` / `restore` / `merge`, which keep the email index and the search
index current and, unless `notify=False`, emit the app's webhook events:
`contact.creation` (plus a `contact.propertyChange` per subscribed property it was
created with), one `propertyChange` per changed subscribed property,
`contact.deletion`, `contact.merge` and `contact.restore`. API writes carry
`changeSource` INTEGRATION, app edits CRM_UI. Associating a contact with a company
or a note moves its lastmodifieddate (HubSpot recomputes activity properties), so a
changed-since search sees it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from crmsync.sim.hubspot import links
from crmsync.sim.hubspot.config import HubSpotSimConfig
from crmsync.sim.hubspot.hooks import HookDeliverer
from crmsync.sim.hubspot.model import COMPANIES, CONTACTS, SCHEMAS, CrmObject, Schema, now_ms
from crmsync.sim.hubspot.people import EmailIndex, emails_of
from crmsync.sim.hubspot.search import SearchIndex
from crmsync.sim.hubspot.seed import SeedFacts, seed_portal
from crmsync.sim.hubspot.store import ObjectStore

Source = tuple[str, str]  # (changeSource, sourceId) of webhook events
IN_APP: Source = ("CRM_UI", "userId:1")
FIRST_IDS = {"contacts": 101, "companies": 700_001, "notes": 90_000_001}
MERGE_KEEPS = frozenset({"email", "hs_additional_emails", "hs_merged_object_ids"})


class EmailConflictError(Exception):
    """Another live contact already has the email (HubSpot's 409 CONFLICT)."""

    def __init__(self, existing_id: int) -> None:
        super().__init__(f"Contact already exists. Existing ID: {existing_id}")
        self.existing_id = existing_id


class Portal:
    """The seeded objects of one portal, their indexes and the app's webhooks."""

    def __init__(self, config: HubSpotSimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.stores = {t: ObjectStore(SCHEMAS[t], FIRST_IDS[t], lag=config.search_lag)
                       for t in SCHEMAS}
        self.contacts, self.companies, self.notes = (
            self.stores["contacts"], self.stores["companies"], self.stores["notes"])
        self.facts: SeedFacts = seed_portal(self.rng, config.people, self.contacts,
                                            self.companies)
        self.emails = EmailIndex()
        for contact in self.contacts:
            self.emails.reindex(contact)
        self.search = {t: SearchIndex(store) for t, store in self.stores.items()}
        self.hooks = HookDeliverer(config)
        self.api_source: Source = ("INTEGRATION", str(config.app_id))

    def create(self, schema: Schema, values: Mapping[str, str | None], *,
               created_ms: int | None = None, source: Source, notify: bool = True) -> CrmObject:
        store = self.stores[schema.object_type]
        now = now_ms()
        if schema is CONTACTS:
            self._check_emails(values, besides=None)
        obj = CrmObject(schema, store.new_id(), created_ms if created_ms is not None else now,
                        now, {k: v for k, v in values.items() if v})
        store.add(obj)
        if schema is CONTACTS:
            self.emails.reindex(obj)
            if notify:
                self._emit("contact.creation", obj, now, source)
                self._property_events(obj, sorted(obj.properties), now, source)
        return obj

    def update(self, obj: CrmObject, values: Mapping[str, str | None], *, source: Source,
               notify: bool = True) -> list[str]:
        if obj.schema is CONTACTS:
            self._check_emails(values, besides=obj.id)
        changed = [k for k, v in values.items() if (v or None) != obj.properties.get(k)]
        if not changed:
            return []
        now = now_ms()
        with self.stores[obj.schema.object_type].changing(obj):
            for name in changed:
                value = values[name]
                if value:
                    obj.properties[name] = value
                else:
                    obj.properties.pop(name, None)
            obj.updated_ms = max(now, obj.updated_ms)
        if obj.schema is CONTACTS:
            self.emails.reindex(obj)
            if notify:
                self._property_events(obj, changed, now, source)
        return changed

    def archive(self, obj: CrmObject, *, source: Source, notify: bool = True) -> None:
        now = now_ms()
        with self.stores[obj.schema.object_type].changing(obj):
            obj.archived, obj.archived_ms = True, now
        if obj.schema is CONTACTS:
            self.emails.reindex(obj)
            if notify:
                self._emit("contact.deletion", obj, now, source)

    def restore(self, obj: CrmObject, *, source: Source, notify: bool = True) -> None:
        if not obj.archived or obj.merged_into is not None:
            raise ValueError(f"{obj.id} is not archived (or was merged away)")
        self._check_emails(obj.properties, besides=obj.id)
        now = now_ms()
        with self.stores[obj.schema.object_type].changing(obj):
            obj.archived, obj.archived_ms = False, None
            obj.updated_ms = max(now, obj.updated_ms)
        self.emails.reindex(obj)
        if notify:
            self._emit("contact.restore", obj, now, source)

    def merge(self, primary: CrmObject, merged: CrmObject, *, source: Source,
              notify: bool = True) -> CrmObject:
        """Merge `merged` into `primary`: empty properties filled from it, its emails
        added, its companies and notes moved; its id then resolves to `primary`."""
        if primary is merged:
            raise ValueError("cannot merge a contact into itself")
        values: dict[str, str | None] = {
            k: v for k, v in merged.properties.items()
            if k not in MERGE_KEEPS and not primary.properties.get(k)}
        moved = len(values)
        known = {e.lower() for e in emails_of(primary)}
        extra = emails_of(primary)[1:] + [e for e in emails_of(merged) if e.lower() not in known]
        values["hs_additional_emails"] = ";".join(extra) or None
        ids = [i for i in primary.properties.get("hs_merged_object_ids", "").split(";") if i]
        values["hs_merged_object_ids"] = ";".join([*ids, str(merged.id)])
        merged.merged_into = primary.id
        self.archive(merged, source=source, notify=False)
        for other_type in ("companies", "notes"):
            for other_id in list(merged.linked(other_type)):
                other = self.stores[other_type].get(other_id)
                if other is not None:
                    links.unlink(merged, other)
                    links.link(primary, other)
        now = now_ms()
        if notify:
            self._emit("contact.merge", primary, now, source, primaryObjectId=primary.id,
                       mergedObjectIds=[merged.id], newObjectId=primary.id,
                       numberOfPropertiesMoved=moved)
        self.update(primary, values, source=source, notify=notify)
        return primary

    def associate(self, a: CrmObject, b: CrmObject, *, primary: bool = False) -> None:
        """Associate two objects; a contact's first company becomes its primary one.
        The contact's lastmodifieddate moves (so a changed-since poll sees it)."""
        contact = a if a.schema is CONTACTS else b if b.schema is CONTACTS else None
        if contact is None:
            links.link(a, b)
            return
        other = b if contact is a else a
        with self.contacts.changing(contact):
            links.link(contact, other)
            if other.schema is COMPANIES and (primary or contact.primary_company is None):
                contact.primary_company = other.id
            contact.updated_ms = max(now_ms(), contact.updated_ms)

    def dissociate(self, a: CrmObject, b: CrmObject) -> bool:
        contact = a if a.schema is CONTACTS else b if b.schema is CONTACTS else None
        if contact is None:
            return links.unlink(a, b)
        with self.contacts.changing(contact):
            removed = links.unlink(a, b)
            if removed:
                contact.updated_ms = max(now_ms(), contact.updated_ms)
        return removed

    # --- internals ---------------------------------------------------------------------

    def _check_emails(self, values: Mapping[str, str | None], *, besides: int | None) -> None:
        extra = (values.get("hs_additional_emails") or "").split(";")
        wanted = [values.get("email") or "", *extra]
        for address in (a.strip() for a in wanted):
            owner = self.emails.owner(address, besides=besides) if address else None
            if owner is not None:
                raise EmailConflictError(owner)

    def _property_events(self, obj: CrmObject, names: Iterable[str], at: int,
                         source: Source) -> None:
        for name in names:
            self._emit("contact.propertyChange", obj, at, source, propertyName=name,
                       propertyValue=obj.properties.get(name, ""))

    def _emit(self, kind: str, obj: CrmObject, at: int, source: Source,
              **fields: object) -> None:
        self.hooks.emit(kind, obj.id, at, **fields, changeSource=source[0],
                        sourceId=source[1])
