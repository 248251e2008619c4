"""Company names of HubSpot contacts, and the contact's company on writes.

A contact's companies are associations, a company's name is a property of the company
record. Reading a page: ONE association batch read for the page's contacts
(`/crm/v4/associations/contacts/companies/batch/read`, up to 1,000 ids), then ONE
companies batch read (up to 100 ids) for the companies whose names are not cached.
The company shown is the primary association's (`typeId` 1, label "Primary"), else
the first associated company's, else the contact's free-text `company` property.

Writing: the company named is found by name (search, oldest first) or created, and
made the contact's only company (the default association PUT, the others deleted).
Names resolved or created here are cached: search lags writes by seconds, so asking it
again for a company just created would not find it and create a second one.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, Final, NamedTuple

from crmsync.adapters.errors import CrmDecodeError, CrmNotFoundError
from crmsync.adapters.hubspot_values import properties_of, record_id, text
from crmsync.adapters.lru import remember
from crmsync.net.transport import Transport

CACHE_SIZE: Final = 50_000
LINKS_BATCH: Final = 1_000  # the most ids one association batch read takes
NAMES_BATCH: Final = 100  # the most ids one object batch read takes
PRIMARY_TYPE_ID: Final = 1  # HUBSPOT_DEFINED contact → company "Primary"
LINKS_PATH: Final = "/crm/v4/associations/contacts/companies/batch/read"
NAMES_PATH: Final = "/crm/v3/objects/companies/batch/read"


class Link(NamedTuple):
    company_id: str
    primary: bool


def results_of(response: Any, method: str, route: str) -> list[dict[str, Any]]:
    """The objects of an answer's `results` list; none is a `CrmDecodeError` (reading
    it as empty would drop companies, notes or whole pages silently)."""
    results = response.get("results") if isinstance(response, dict) else None
    if not isinstance(results, list):
        raise CrmDecodeError("unexpected response: no 'results' list", method=method,
                             route=route)
    return [item for item in results if isinstance(item, dict)]


def _is_primary(types: Any) -> bool:
    return isinstance(types, list) and any(
        isinstance(t, dict) and (t.get("typeId") == PRIMARY_TYPE_ID
                                 or str(t.get("label") or "").lower() == "primary")
        for t in types
    )


def links_v4(response: Any) -> dict[str, list[Link]]:
    """Contact id → its companies, from an association batch read."""
    found: dict[str, list[Link]] = {}
    for result in results_of(response, "POST", LINKS_PATH):
        contact = record_id(result.get("from"))
        targets = result.get("to")
        if contact is None or not isinstance(targets, list):
            continue
        links = found.setdefault(contact, [])
        for target in targets:
            company = record_id({"id": target.get("toObjectId")}) \
                if isinstance(target, dict) else None
            if company is not None:
                links.append(Link(company, _is_primary(target.get("associationTypes"))))
    return found


def links_v3(raw: dict[str, Any]) -> list[Link]:
    """A contact's companies from the `associations` a v3 read embeds: one entry per
    company and type; `contact_to_company` is the primary one."""
    associations = raw.get("associations")
    companies = associations.get("companies") if isinstance(associations, dict) else None
    results = companies.get("results") if isinstance(companies, dict) else None
    primary: dict[str, bool] = {}
    for entry in results if isinstance(results, list) else []:
        company = record_id(entry)
        if company is not None:
            is_primary = isinstance(entry, dict) and entry.get("type") == "contact_to_company"
            primary[company] = primary.get(company, False) or is_primary
    return [Link(company, is_primary) for company, is_primary in primary.items()]


def next_after(response: Any) -> str | None:
    """`paging.next.after` of a list answer; None on the last page."""
    paging = response.get("paging") if isinstance(response, dict) else None
    following = paging.get("next") if isinstance(paging, dict) else None
    after = following.get("after") if isinstance(following, dict) else None
    if isinstance(after, int) and not isinstance(after, bool):
        return str(after)
    return after if isinstance(after, str) and after else None


class Companies:
    """Company names by id (cached, bounded) and the contact's company association."""

    def __init__(self, http: Transport, search: Transport) -> None:
        self._http = http
        self._search = search
        self._names: OrderedDict[str, str | None] = OrderedDict()
        self._fresh: set[str] = set()  # ids whose name was read in this listing
        self._ids: OrderedDict[str, str] = OrderedDict()  # name (lower case) → id

    def clear(self) -> None:
        """Read every name again (a new full listing picks up renamed companies)."""
        self._fresh.clear()

    async def links(self, contact_ids: Sequence[str]) -> dict[str, list[Link]]:
        found: dict[str, list[Link]] = {}
        for start in range(0, len(contact_ids), LINKS_BATCH):
            chunk = contact_ids[start:start + LINKS_BATCH]
            response = await self._http.call(
                "POST", LINKS_PATH, json={"inputs": [{"id": i} for i in chunk]}, read=True)
            found.update(links_v4(response))
        return found

    async def resolve(self, links: Iterable[list[Link]]) -> None:
        """Read the names of the linked companies not cached yet."""
        wanted = list(dict.fromkeys(
            link.company_id for group in links for link in group
            if link.company_id not in self._fresh))
        for start in range(0, len(wanted), NAMES_BATCH):
            chunk = wanted[start:start + NAMES_BATCH]
            response = await self._http.call(
                "POST", NAMES_PATH, read=True,
                json={"properties": ["name"], "inputs": [{"id": i} for i in chunk]})
            for company in results_of(response, "POST", NAMES_PATH):
                company_id = record_id(company)
                if company_id is not None:
                    self._remember(company_id, text(properties_of(company).get("name")))
            for missing in chunk:  # deleted since it was linked: no name
                if missing not in self._fresh:
                    self._remember(missing, None)

    def name(self, links: list[Link]) -> str | None:
        """The primary company's name, else the first named one's."""
        for link in sorted(links, key=lambda link: not link.primary):
            if named := self._names.get(link.company_id):
                return named
        return None

    def _remember(self, company_id: str, name: str | None) -> None:
        old = self._names.get(company_id)
        if old and old != name and self._ids.get(old.lower()) == company_id:
            del self._ids[old.lower()]  # renamed (or gone): its old name is free again
        self._fresh.add(company_id)
        for dropped in remember(self._names, company_id, name, CACHE_SIZE):
            self._fresh.discard(dropped)
        if name:
            remember(self._ids, name.lower(), company_id, CACHE_SIZE)

    async def find_or_create(self, name: str, *, cached: bool = True) -> str:
        """The id of the (oldest) company called `name`, created when there is none."""
        if cached and (known := self._ids.get(name.lower())) is not None:
            return known
        path = "/crm/v3/objects/companies/search"
        found = await self._search.call("POST", path, read=True, json={
            "filterGroups": [{"filters": [
                {"propertyName": "name", "operator": "EQ", "value": name}]}],
            "sorts": [{"propertyName": "createdate", "direction": "ASCENDING"}],
            "properties": ["name"], "limit": 1,
        })
        matches = results_of(found, "POST", path)
        company_id = record_id(matches[0]) if matches else None
        if company_id is None:
            path = "/crm/v3/objects/companies"
            # Not retried once sent: a create whose answer was lost would be made twice.
            created = await self._http.call("POST", path, json={"properties": {"name": name}})
            company_id = record_id(created)
            if company_id is None:
                raise CrmDecodeError("unexpected response: no company 'id'", method="POST",
                                     route=path)
        self._remember(company_id, name)
        return company_id

    async def set_only(self, contact_id: str, company_name: str | None) -> None:
        """Make the company called `company_name` the contact's only company (None:
        no company). A cached company deleted since is looked up once more."""
        current = (await self.links([contact_id])).get(contact_id, [])
        keep: str | None = None
        if company_name:
            keep = await self.find_or_create(company_name)
            try:
                await self._associate(contact_id, keep)
            except CrmNotFoundError:
                keep = await self.find_or_create(company_name, cached=False)
                await self._associate(contact_id, keep)
        for link in dict.fromkeys(link.company_id for link in current):
            if link != keep:
                with contextlib.suppress(CrmNotFoundError):  # already gone: the goal
                    await self._http.call(
                        "DELETE", f"/crm/v4/objects/contacts/{contact_id}/associations/"
                        f"companies/{link}",
                        route="/crm/v4/objects/contacts/{id}/associations/companies/{id}")

    async def _associate(self, contact_id: str, company_id: str) -> None:
        await self._http.call(
            "PUT", f"/crm/v4/objects/contacts/{contact_id}/associations/default/companies/"
            f"{company_id}",
            route="/crm/v4/objects/contacts/{id}/associations/default/companies/{id}")
