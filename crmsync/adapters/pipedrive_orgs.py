"""Pipedrive organizations: the company names of persons, and the organization a
written company name refers to.

A person holds its organization as a plain `org_id`; the names of a page's
organizations come from one `GET /api/v2/organizations?ids=` (at most 100 ids a call)
and are cached, bounded; a full listing clears the cache first, so a renamed
organization reaches Quo on the next pass.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Final

from crmsync.adapters import pipedrive_values as pv
from crmsync.adapters.lru import remember
from crmsync.adapters.pipedrive_http import (
    PipedriveHttp,
    chunks,
    created_id,
    data_list,
    search_items,
)

ORGANIZATIONS: Final = "/api/v2/organizations"
MAX_IDS: Final = 100  # the most ids one `ids=` filter takes
SEARCH_LIMIT: Final = 100
CACHE_SIZE: Final = 50_000


class Organizations:
    """Organization names by id, cached; organizations by name, found or created."""

    def __init__(self, api: PipedriveHttp) -> None:
        self._api = api
        self._names: OrderedDict[int, str | None] = OrderedDict()

    def clear(self) -> None:
        self._names.clear()

    def name(self, raw: dict[str, Any]) -> str | None:
        """The name of the person's organization (resolved by `resolve`)."""
        org = pv.org_id(raw)
        return None if org is None else self._names.get(org)

    async def resolve(self, raws: list[dict[str, Any]]) -> None:
        """Fetch the names of the persons' organizations not cached yet."""
        wanted = sorted({o for raw in raws if (o := pv.org_id(raw)) is not None}
                        - set(self._names))
        for chunk in chunks(wanted, MAX_IDS):
            response = await self._api.call("GET", ORGANIZATIONS, params=[
                ("ids", ",".join(map(str, chunk))), ("limit", str(len(chunk))),
            ])
            for org in data_list(response, "GET", ORGANIZATIONS):
                ident = pv.int_id(org.get("id"))
                if ident is not None:
                    self._remember(ident, pv.text(org.get("name")))
            for missing in set(chunk) - set(self._names):  # deleted or not visible
                self._remember(missing, None)

    def _remember(self, ident: int, name: str | None) -> None:
        remember(self._names, ident, name, CACHE_SIZE)

    async def named(self, company: str) -> int:
        """The organization named `company` (case-insensitively; of several, the oldest:
        the lowest id), created when there is none."""
        name = company.strip()
        route = f"{ORGANIZATIONS}/search"
        response = await self._api.call("GET", route, search=True, params=[
            ("term", name), ("fields", "name"), ("exact_match", "true"),
            ("limit", str(SEARCH_LIMIT)),
        ])
        found = sorted(
            (ident, str(item["name"]).strip()) for item in search_items(response, route)
            if (ident := pv.int_id(item.get("id"))) is not None
            and str(item.get("name", "")).strip().casefold() == name.casefold()
        )
        if found:
            ident, name = found[0]  # the organization's own spelling, for the company
        else:
            created = await self._api.call("POST", ORGANIZATIONS, json={"name": name})
            ident = created_id(created, "POST", ORGANIZATIONS)
        self._remember(ident, name)
        return ident
