"""Webhook subscriptions at the CRM and at Quo: created idempotently, kept healthy.

`ensure()` makes the providers match what the tenant needs and is safe to repeat: it
reuses our webhooks (same URL, events and phone numbers, secret known), recreates
what is missing or drifted, and removes our stale ones. Quo allows at most 10 phone
numbers per webhook, so each event family gets one webhook per 10 numbers. Signing
secrets are returned only at creation and are kept in the state store.
"""

from __future__ import annotations

import json
import logging
import time

from crmsync import metrics
from crmsync.adapters.base import CrmAdapter
from crmsync.quo.client import QuoClient, WebhookFamily, chunked
from crmsync.quo.models import Webhook, WebhookInput
from crmsync.store import Store
from crmsync.store.subscriptions import Subscription

log = logging.getLogger(__name__)

QUO_FAMILIES: dict[WebhookFamily, list[str]] = {
    "messages": ["message.received", "message.delivered"],
    "calls": ["call.completed"],
    "call-summaries": ["call.summary.completed"],
    "call-transcripts": ["call.transcript.completed"],
}
MAX_RESOURCE_IDS = 10


class SubscriptionManager:
    def __init__(
        self,
        tenant: str,
        *,
        adapter: CrmAdapter,
        quo: QuoClient,
        store: Store,
        public_url: str | None,
        has_static_crm_secret: bool = False,
    ) -> None:
        self.tenant = tenant
        self._adapter = adapter
        self._quo = quo
        self._store = store
        self._public_url = public_url.rstrip("/") if public_url else None
        self._has_static_crm_secret = has_static_crm_secret

    def url(self, source: str) -> str:
        assert self._public_url is not None
        return f"{self._public_url}/webhooks/{self.tenant}/{source}"

    async def ensure(self) -> None:
        if self._public_url is None:
            log.warning("http.public_url is not set: no webhooks registered; changes arrive"
                        " by polling only")
            return
        await self._ensure_crm()
        await self._ensure_quo()

    def _healthy(self, source: str, name: str, healthy: bool) -> None:
        metrics.webhook_subscription_healthy.labels(self.tenant, source, name).set(
            1 if healthy else 0
        )

    async def _ensure_crm(self) -> None:
        url = self.url("crm")
        remote_id, secret = await self._adapter.ensure_webhook(url)
        stored = {s.name: s for s in await self._store.subscriptions.list(self.tenant, "crm")}
        known = stored.get("crm")
        if secret is None and (known is None or known.remote_id != remote_id) \
                and not self._has_static_crm_secret:
            log.error("the CRM webhook %s exists but its signing secret is unknown (it is"
                      " shown only at creation): delete it at the CRM or set"
                      " crm_webhook_secret", remote_id)
        await self._store.subscriptions.upsert(Subscription(
            tenant_id=self.tenant, source="crm", name="crm", remote_id=remote_id,
            secret=secret, url=url, detail="{}", healthy=True, checked_at=time.time(),
        ))
        self._healthy("crm", "crm", True)

    async def _ensure_quo(self) -> None:
        url = self.url("quo")
        phone_ids = sorted(p.id for p in await self._quo.list_phone_numbers())
        remote = {w.id: w for w in await self._quo.list_webhooks() if w.url == url}
        stored = {s.name: s for s in await self._store.subscriptions.list(self.tenant, "quo")}
        wanted: set[str] = set()
        for family, events in QUO_FAMILIES.items():
            for index, chunk in enumerate(chunked(phone_ids, MAX_RESOURCE_IDS)):
                name = f"quo:{family}:{index}"
                wanted.add(name)
                await self._ensure_one(name, family, events, list(chunk), stored, remote)
        for name, subscription in stored.items():
            if name not in wanted:
                await self._quo.delete_webhook(subscription.remote_id)
                await self._store.subscriptions.delete(self.tenant, "quo", name)
        ours = {s.remote_id for s in await self._store.subscriptions.list(self.tenant, "quo")}
        for orphan in set(remote) - ours:
            # Created by a run that died before storing it: its secret is lost.
            await self._quo.delete_webhook(orphan)

    async def _ensure_one(
        self,
        name: str,
        family: WebhookFamily,
        events: list[str],
        resource_ids: list[str],
        stored: dict[str, Subscription],
        remote: dict[str, Webhook],
    ) -> None:
        known = stored.get(name)
        existing = remote.get(known.remote_id) if known else None
        if (
            known is not None
            and existing is not None
            and known.secret
            and sorted(existing.events) == sorted(events)
            and sorted(existing.resource_ids or []) == resource_ids
            and existing.status in (None, "enabled")
        ):
            await self._store.subscriptions.set_health(self.tenant, "quo", name, True)
            self._healthy("quo", name, True)
            return
        if existing is not None:
            await self._quo.delete_webhook(existing.id)
        self._healthy("quo", name, False)
        created = await self._quo.create_webhook(
            family,
            WebhookInput(url=self.url("quo"), events=events, resource_ids=resource_ids,
                         label=f"crmsync {self.tenant}"),
        )
        await self._store.subscriptions.upsert(Subscription(
            tenant_id=self.tenant, source="quo", name=name, remote_id=created.id,
            secret=created.key, url=self.url("quo"),
            detail=json.dumps({"events": events, "resourceIds": resource_ids}),
            healthy=True, checked_at=time.time(),
        ))
        self._healthy("quo", name, True)
        if known is not None:
            log.warning("Quo webhook %s was missing or had drifted: re-created", name)
