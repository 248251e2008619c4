"""Webhook subscriptions at the CRM and at Quo: created idempotently, kept healthy.

`ensure()` makes the providers match what the tenant needs and is safe to repeat: it
reuses our webhooks (same URL, events and phone numbers, secret known), recreates
what is missing or drifted, and removes our stale ones. Signing secrets are returned
only at creation and are kept in the state store.

At Quo, `quo.webhooks` picks the system (INTERFACE §7):

- "2026-03-30" (default): one webhook per tenant (`quo_subscription.py`). A tenant that
  still has legacy webhooks on its URL is moved over without a gap first
  (`webhook_migration.py`); if a step fails, the legacy webhooks stay, the reason is
  logged, and the next check tries again. `quo_webhook_id` is then the webhook whose
  missed deliveries the catch-up retries (`catch_up.py`).
- "legacy": `/v1/webhooks`, as before. Quo allows at most 10 phone numbers per legacy
  webhook, so each event family gets one webhook per 10 numbers. A 2026-03-30 webhook
  left from before (a rollback) is deleted once the legacy ones exist.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Literal

from crmsync import metrics
from crmsync.adapters.base import CrmAdapter
from crmsync.quo.client import QuoClient, WebhookFamily, chunked
from crmsync.quo.models import Webhook, WebhookInput
from crmsync.quo.webhooks import QuoWebhooksClient
from crmsync.services.quo_subscription import (
    VERSIONED_NAME,
    VersionedWebhookKeeper,
    WantedWebhook,
    is_legacy_name,
)
from crmsync.services.webhook_migration import (
    MigrationFailed,
    MigrationResult,
    Report,
    WebhookMigration,
)
from crmsync.store import Store
from crmsync.store.subscriptions import POLLING_ONLY, Subscription

log = logging.getLogger(__name__)

QUO_FAMILIES: dict[WebhookFamily, list[str]] = {
    "messages": ["message.received", "message.delivered"],
    "calls": ["call.completed"],
    "call-summaries": ["call.summary.completed"],
    "call-transcripts": ["call.transcript.completed"],
}
MAX_RESOURCE_IDS = 10
QuoWebhooks = Literal["2026-03-30", "legacy"]


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
        hooks: QuoWebhooksClient | None = None,
        system: QuoWebhooks = "legacy",
        contact_events: bool = True,
        verify_within: float | None = None,
    ) -> None:
        """`hooks` (the 2026-03-30 client) is required with `system="2026-03-30"`;
        `contact_events`: subscribe to `contact.*` (the tenant's `quo_to_crm` is not
        "off"); `verify_within`: how long a migration waits for its test event."""
        self.tenant = tenant
        self._adapter = adapter
        self._quo = quo
        self._store = store
        self._public_url = public_url.rstrip("/") if public_url else None
        self._has_static_crm_secret = has_static_crm_secret
        self._hooks = hooks
        self.system: QuoWebhooks = system
        self._contact_events = contact_events
        self._verify_within = verify_within
        #: the active 2026-03-30 webhook (what the catch-up looks at), once known
        self.quo_webhook_id: str | None = None
        #: why the last migration attempt failed (None: none failed, or it succeeded)
        self.migration_error: MigrationFailed | None = None

    def url(self, source: str) -> str:
        assert self._public_url is not None
        return f"{self._public_url}/webhooks/{self.tenant}/{source}"

    async def ensure(self) -> None:
        if self._public_url is None:
            log.warning("http.public_url is not set: no webhooks registered; changes arrive"
                        " by polling only")
            return
        await self._ensure_crm()
        if self.system == "legacy":
            await self._ensure_quo()
            await self._drop_versioned()
        else:
            await self._ensure_versioned()

    def _healthy(self, source: str, name: str, healthy: bool) -> None:
        metrics.webhook_subscription_healthy.labels(self.tenant, source, name).set(
            1 if healthy else 0
        )

    async def _ensure_crm(self) -> None:
        url = self.url("crm")
        if not self._adapter.webhooks_by_api:
            await self._note_hand_made_crm_webhook(url)
            return
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

    async def _note_hand_made_crm_webhook(self, url: str) -> None:
        """A CRM whose webhooks are set up in the CRM by hand (a HubSpot app): nothing to
        create; without `crm_webhook_secret` nothing can be verified, so every delivery
        would be refused and the tenant relies on polling (`crmsync status` says so)."""
        reason = None if self._has_static_crm_secret else (
            "crm_webhook_secret is not set, so CRM webhooks cannot be verified")
        if reason is None:
            log.info("CRM webhooks are configured in the CRM: point them at %s", url)
        else:
            log.warning("%s: changes in the CRM arrive by polling only (every"
                        " poll_interval); set it to the app's client secret and point the"
                        " app's webhooks at %s", reason, url)
        await self._store.subscriptions.upsert(Subscription(
            tenant_id=self.tenant, source="crm", name="crm", remote_id="configured-in-crm",
            secret=None, url=url,
            detail=json.dumps({} if reason is None else {POLLING_ONLY: reason}),
            healthy=reason is None, checked_at=time.time(),
        ))
        self._healthy("crm", "crm", reason is None)

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
            if name not in wanted and is_legacy_name(name):
                await self._quo.delete_webhook(subscription.remote_id)
                await self._store.subscriptions.delete(self.tenant, "quo", name)
        ours = {s.remote_id for s in await self._store.subscriptions.list(self.tenant, "quo")
                if is_legacy_name(s.name)}
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

    # -- the 2026-03-30 system -----------------------------------------------------------

    def _need_hooks(self) -> QuoWebhooksClient:
        if self._hooks is None:
            raise RuntimeError("quo.webhooks = '2026-03-30' needs the 2026-03-30 client")
        return self._hooks

    def _keeper(self) -> VersionedWebhookKeeper:
        return VersionedWebhookKeeper(self.tenant, hooks=self._need_hooks(), store=self._store)

    def _migration(self) -> WebhookMigration:
        return WebhookMigration(self.tenant, quo=self._quo, hooks=self._need_hooks(),
                                keeper=self._keeper(), verify_within=self._verify_within)

    async def wanted_webhook(self) -> WantedWebhook:
        """The tenant's webhook as it must be now (its phone numbers are read from Quo)."""
        phone_ids = [p.id for p in await self._quo.list_phone_numbers()]
        return WantedWebhook.build(self.tenant, self.url("quo"), phone_ids,
                                   contact_events=self._contact_events)

    async def _ensure_versioned(self) -> None:
        try:
            await self.migrate()
        except MigrationFailed as failed:
            log.error(  # noqa: TRY400 (the step and reason say it all; no traceback)
                "moving the Quo webhooks to the 2026-03-30 system failed at %s; the legacy"
                " webhooks stay and keep delivering (tried again at the next subscription"
                " check)", failed)

    async def migrate(
        self, *, legacy: list[Webhook] | None = None, report: Report | None = None
    ) -> MigrationResult | None:
        """Move the tenant's legacy Quo webhooks to one 2026-03-30 webhook (the steps of
        `webhook_migration.py`, each reported to `report`); None if it has none (the
        2026-03-30 webhook is then only ensured). `MigrationFailed` if a step failed:
        the legacy webhooks are untouched."""
        if self._public_url is None:
            raise MigrationFailed("legacy", "http.public_url is not set: Quo has no URL to"
                                            " deliver to")
        migration = self._migration()
        if legacy is None:
            legacy = await migration.legacy_webhooks(self.url("quo"))
        if not legacy:
            keeper = self._keeper()
            kept = await keeper.ensure(await self.wanted_webhook(), enable=True)
            self.quo_webhook_id = kept.id
            await keeper.retire_legacy()
            if report is not None:
                report(f"no legacy webhooks on {self.url('quo')}; webhook {kept.id} is the"
                       " tenant's (2026-03-30, enabled)")
            return None
        wanted = await self.wanted_webhook()
        try:
            result = await migration.run(wanted, legacy, report=report)
        except MigrationFailed as failed:
            self.migration_error = failed
            self._healthy("quo", VERSIONED_NAME, False)
            raise
        self.migration_error = None
        self.quo_webhook_id = result.webhook_id
        log.info("Quo webhooks moved to the 2026-03-30 system: webhook %s; legacy %s deleted",
                 result.webhook_id, ", ".join(result.deleted_legacy))
        return result

    async def _drop_versioned(self) -> None:
        """Legacy mode: a 2026-03-30 webhook stored from before goes (the legacy ones
        exist by now), so events are not delivered twice for ever."""
        self.quo_webhook_id = None
        stored = {s.name: s for s in await self._store.subscriptions.list(self.tenant, "quo")}
        versioned = stored.get(VERSIONED_NAME)
        if versioned is None:
            return
        if self._hooks is None:
            log.warning("a 2026-03-30 Quo webhook (%s) is stored but no client for it: left"
                        " in place", versioned.remote_id)
            return
        await self._hooks.delete(versioned.remote_id)
        await self._store.subscriptions.delete(self.tenant, "quo", VERSIONED_NAME)
        log.warning("quo.webhooks is 'legacy': deleted the 2026-03-30 webhook %s",
                    versioned.remote_id)
