"""One tenant's Metakocka link (INTERFACE §8): its client, its actors, its on-demand calls.

Built by the tenant runtime when the tenant has `[tenants.metakocka]`. The client has
the company's limiter from the process registry (every tenant linked to one company
shares it) and the secret key, revealed here only to construct it. What runs when:

* `direction` to_metakocka or both: `MetakockaPusher` sweeps, every 2 s, the Quo
  mappings written since its last sweep (initial sync, webhooks, polling, on-demand)
  and pushes those people to Metakocka on its own schedule: the Quo pipeline never
  waits for Metakocka. `crmsync sync` sweeps once after its pass.
* `direction` from_metakocka or both: `MetakockaPoller` re-reads the paired partners
  due every `poll_interval`, then searches `discover_from` documents for new ones.

The management API calls `push`, `pull`, `unsynced` and `mappings`.
"""

from __future__ import annotations

from collections.abc import Coroutine, Sequence
from typing import Any

from crmsync.adapters.base import CrmAdapter
from crmsync.config import TenantConfig
from crmsync.config.model import MetakockaConfig
from crmsync.metakocka.client import MetakockaClient, metakocka_limiter
from crmsync.net.ratelimit import Lane
from crmsync.services.metakocka_pull import MetakockaPoller, MetakockaPull, PullResult
from crmsync.services.metakocka_push import (
    MetakockaCalls,
    MetakockaPush,
    MetakockaPusher,
    PersonLocks,
    PushResult,
    conflict_rule,
    due_query,
)
from crmsync.store import Store
from crmsync.store.metakocka import MkLink, UnsyncedPartner
from crmsync.tenant.resources import Resources


class MetakockaLink:
    def __init__(
        self,
        tenant: TenantConfig,
        link: MetakockaConfig,
        *,
        resources: Resources,
        adapter: CrmAdapter,
        store: Store,
    ) -> None:
        self.tenant = tenant.id
        self.config = link
        self._store = store
        self._crm_object = tenant.object_types[0]
        client = MetakockaClient(
            resources.session,
            base_url=link.base_url,
            company_id=link.company_id,
            secret_key=link.secret_key.reveal(),
            limiter=metakocka_limiter(
                resources.limiters, base_url=link.base_url, company_id=link.company_id),
            retry=resources.retry,
        )
        calls = MetakockaCalls(tenant.id, client)
        conflict = conflict_rule(tenant.conflict)
        locks = PersonLocks()  # the sweep's and the API's pushes share them

        def push(lane: Lane) -> MetakockaPush:
            return MetakockaPush(
                tenant.id, calls=calls, adapter=adapter, store=store,
                default_country=link.default_country, conflict=conflict, lane=lane,
                locks=locks,
            )

        def pull(lane: Lane) -> MetakockaPull:
            return MetakockaPull(
                tenant.id, calls=calls, adapter=adapter, store=store,
                crm_object=self._crm_object, default_country=link.default_country,
                conflict=conflict, discover_from=link.discover_from,
                auto_import=link.auto_import, lane=lane,
            )

        self._push = push(Lane.BACKFILL)
        self._push_now = push(Lane.LIVE)
        self._pull = pull(Lane.BACKFILL)
        self._pull_now = pull(Lane.LIVE)
        self.pusher = MetakockaPusher(tenant.id, push=self._push, due=due_query(store))

    @property
    def to_metakocka(self) -> bool:
        return self.config.direction in ("both", "to_metakocka")

    @property
    def from_metakocka(self) -> bool:
        return self.config.direction in ("both", "from_metakocka")

    def children(self) -> list[tuple[str, Coroutine[Any, Any, None]]]:
        """The link's actors, supervised with the tenant's others."""
        actors: list[tuple[str, Coroutine[Any, Any, None]]] = []
        if self.to_metakocka:
            actors.append((f"{self.tenant}:metakocka_push", self.pusher.start()))
        if self.from_metakocka:
            poller = MetakockaPoller(self._pull, poll_interval=self.config.poll_interval)
            actors.append((f"{self.tenant}:metakocka_pull", poller.start()))
        return actors

    async def sweep(self) -> int:
        """Push every person the Quo pipeline wrote since the last sweep (`crmsync sync`)."""
        return await self.pusher.sweep() if self.to_metakocka else 0

    # -- the management API ---------------------------------------------------------------

    async def push(self, crm_record_ids: Sequence[str]) -> list[PushResult]:
        return await self._push_now.push_ids(self._crm_object, crm_record_ids)

    async def pull(self, mk_ids: Sequence[str]) -> list[PullResult]:
        return await self._pull_now.pull_ids(mk_ids)

    async def unsynced(self) -> list[UnsyncedPartner]:
        return await self._store.mk_unsynced.list(self.tenant)

    async def mappings(
        self, crm_record_id: str | None = None, mk_id: str | None = None
    ) -> list[MkLink]:
        if crm_record_id is not None:
            link = await self._store.mk_links.get(self.tenant, self._crm_object, crm_record_id)
            found = [] if link is None else [link]
            return [x for x in found if mk_id is None or x.mk_id == mk_id]
        if mk_id is not None:
            return await self._store.mk_links.by_mk_id(self.tenant, mk_id)
        return [link async for link in self._store.mk_links.iter_all(self.tenant)]
