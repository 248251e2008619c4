"""`HubSpotSim`: the simulated portal with its gateway (limits, faults, counters) and the
helpers tests use to change contacts "in the HubSpot app".

The changes themselves and their webhook events are `Portal`'s (`portal.py`); the
methods here resolve ids, validate property names and act as a user in the app
(`changeSource` CRM_UI).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

from aiohttp import web

from crmsync.sim.hubspot.config import HubSpotSimConfig
from crmsync.sim.hubspot.faults import Faults
from crmsync.sim.hubspot.model import COMPANIES, CONTACTS, CrmObject, JSONObject, Schema, now_ms
from crmsync.sim.hubspot.people import e164_phones
from crmsync.sim.hubspot.portal import IN_APP, EmailConflictError, Portal
from crmsync.sim.hubspot.ratelimit import RateLimiter
from crmsync.sim.hubspot.stats import HubSpotSimStats
from crmsync.sim.hubspot.store import ObjectStore

__all__ = ["HUBSPOT_SIM_KEY", "EmailConflictError", "HubSpotSim"]


class HubSpotSim(Portal):
    """State of one simulated HubSpot portal."""

    def __init__(self, config: HubSpotSimConfig) -> None:
        super().__init__(config)
        self.limiter = RateLimiter(
            config.requests_per_ten_seconds, config.search_per_second, config.daily_limit,
            count_rejected=config.count_rejected)
        self.stats = HubSpotSimStats(self.limiter)
        # Their own generator: rate-based faults replay from the seed whatever else draws.
        self.faults = Faults(rng=random.Random(config.seed + 1))

    # --- lookups ---------------------------------------------------------------------

    def contact(self, record_id: str | int) -> CrmObject:
        """The stored contact, archived or not; KeyError if it never existed."""
        found = self.contacts.get(int(record_id))
        if found is None:
            raise KeyError(record_id)
        return found

    def resolve(self, store: ObjectStore, object_id: int) -> CrmObject | None:
        """The live object; a contact merged away resolves to the one it became."""
        obj = store.get(object_id)
        for _ in range(10):  # merge chains are short; never loop forever
            if obj is None or obj.merged_into is None:
                break
            obj = store.get(obj.merged_into)
        return None if obj is None or obj.archived else obj

    def record_ids(self) -> list[str]:
        """Every live contact, in id order."""
        return [str(c.id) for c in self.contacts if not c.archived]

    def newest_first(self) -> list[str]:
        """Every live contact, latest createdate first (ties: higher id first), the
        order of a search sorted by createdate DESCENDING."""
        live = [c for c in self.contacts if not c.archived]
        live.sort(key=lambda c: (c.created_ms, c.id), reverse=True)
        return [str(c.id) for c in live]

    def person_phones(self, record_id: str) -> list[str]:
        return e164_phones(self.contact(record_id))

    def web_url(self, record_id: str | int) -> str:
        return (f"https://app.hubspot.com/contacts/{self.config.portal_id}/record/"
                f"{CONTACTS.type_id}/{record_id}")

    def notes_of(self, record_id: str | int) -> list[JSONObject]:
        """The contact's live notes (associated with it), oldest first, as the API shows."""
        contact = self.contact(record_id)
        found = (self.notes.live(i) for i in sorted(contact.linked("notes")))
        return [n.render(list(n.properties)) for n in found if n is not None]

    def point_webhooks(self, url: str | None) -> None:
        """The app's target URL (None: deliver nothing)."""
        self.hooks.target_url = url

    def set_search_lag(self, seconds: float) -> None:
        for store in self.stores.values():
            store.lag = seconds

    def reset_stats(self) -> None:
        self.stats.reset()

    # --- changes "in the app" (tests and /_sim/) ----------------------------------------

    def add_contact(self, *, notify: bool = True, company_ids: Iterable[str | int] = (),
                    created_at_ms: int | None = None, **properties: str | None) -> str:
        """Create a contact; the first of `company_ids` becomes its primary company."""
        _check_names(CONTACTS, properties)
        companies = [self._company(i) for i in company_ids]
        contact = self.create(CONTACTS, properties, created_ms=created_at_ms,
                              source=IN_APP, notify=notify)
        for n, company in enumerate(companies):
            self.associate(contact, company, primary=n == 0)
        return str(contact.id)

    def update_contact(self, record_id: str | int, *, notify: bool = True,
                       **properties: str | None) -> list[str]:
        """Edit properties ("" or None clears); the changed property names."""
        _check_names(CONTACTS, properties)
        return self.update(self._live(record_id), properties, source=IN_APP, notify=notify)

    def delete_contact(self, record_id: str | int, *, notify: bool = True) -> None:
        self.archive(self._live(record_id), source=IN_APP, notify=notify)

    def restore_contact(self, record_id: str | int, *, notify: bool = True) -> None:
        self.restore(self.contact(record_id), source=IN_APP, notify=notify)

    def merge_contacts(self, primary: str | int, merged: str | int, *,
                       notify: bool = True) -> str:
        return str(self.merge(self._live(primary), self._live(merged), source=IN_APP,
                              notify=notify).id)

    def add_company(self, name: str, *, domain: str | None = None) -> str:
        company = self.create(COMPANIES, {"name": name, "domain": domain}, source=IN_APP)
        return str(company.id)

    def associate_company(self, record_id: str | int, company_id: str | int, *,
                          primary: bool = False) -> None:
        self.associate(self._live(record_id), self._company(company_id), primary=primary)

    def bulk_add_contacts(self, count: int, *, created_at_ms: int | None = None) -> list[str]:
        """`count` plain contacts at once, all created at the same millisecond (ties for
        windowing tests), visible to search at once, no webhooks."""
        created = now_ms() if created_at_ms is None else created_at_ms
        ids: list[str] = []
        for _ in range(count):
            contact = CrmObject(CONTACTS, self.contacts.new_id(), created, created)
            contact.properties.update(firstname="Bulk", lastname=str(contact.id),
                                      email=f"bulk{contact.id}@bulk.example")
            self.contacts.add(contact, indexed=True)
            self.emails.reindex(contact)
            ids.append(str(contact.id))
        return ids

    async def close(self) -> None:
        await self.hooks.close()

    # --- internals ---------------------------------------------------------------------

    def _live(self, record_id: str | int) -> CrmObject:
        contact = self.contact(record_id)
        if contact.archived:
            raise KeyError(f"contact {record_id} is archived")
        return contact

    def _company(self, company_id: str | int) -> CrmObject:
        company = self.companies.live(int(company_id))
        if company is None:
            raise KeyError(f"no company {company_id}")
        return company


def _check_names(schema: Schema, properties: Mapping[str, object]) -> None:
    unknown = [n for n in properties if n not in schema.writable]
    if unknown:
        raise ValueError(f"not writable {schema.label} properties: {', '.join(unknown)}")


HUBSPOT_SIM_KEY = web.AppKey("hubspot_sim", HubSpotSim)
