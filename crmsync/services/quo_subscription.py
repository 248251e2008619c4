"""The tenant's one Quo webhook of the 2026-03-30 system, kept as the tenant needs it.

    keeper = VersionedWebhookKeeper("acme", hooks=hooks, store=store)
    kept = await keeper.ensure(wanted, enable=True)

One webhook per tenant (INTERFACE §7): its URL is `<public_url>/webhooks/<tenant>/quo`,
its events the activity events plus `contact.updated`/`contact.deleted` (unless the
tenant's `quo_to_crm` is "off"), its `resourceIds` the workspace's phone number ids
(contact events ignore them). Its `whsec_` key is returned only at creation (and by a
rotation), so it is stored as the `quo:webhook` subscription's secret, where the
listener finds it.

`ensure()` is idempotent and repairs drift: a webhook missing at Quo is created; one
with other events or phone numbers is PATCHed back; a disabled one is enabled (when
`enable`); a key we do not hold (lost, or a webhook on our URL made by a run that died
before storing the key) is rotated, which gives us a new one. Other webhooks on our URL
are deleted: they would deliver every event twice. The order is crash-safe: the key is
stored right after the call that returned it, and a webhook whose key did not make it
into the store is found on our URL at the next check and rotated.

The stored subscriptions of legacy webhooks (`quo:messages:0`, …) are *retired* once the
tenant no longer has legacy webhooks: their secrets stay for `RETIRED_SECRET_SECONDS`
(Quo retries a legacy delivery for about a day, so one sent just before the switch may
still arrive), then the rows are deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Final

import msgspec

from crmsync import metrics
from crmsync.quo.models import VersionedWebhook, VersionedWebhookInput, VersionedWebhookPatch
from crmsync.quo.webhooks import API_VERSION, QuoWebhooksClient
from crmsync.store import Store
from crmsync.store.subscriptions import Subscription

log = logging.getLogger(__name__)

#: the stored name of the tenant's 2026-03-30 webhook
VERSIONED_NAME: Final = "quo:webhook"
ACTIVITY_EVENTS: Final = (
    "message.received", "message.delivered", "call.completed", "call.missed",
    "call.voicemail.completed", "call.recording.completed", "call.summary.completed",
    "call.transcript.completed",
)
CONTACT_EVENTS: Final = ("contact.updated", "contact.deleted")
#: every phone number (what Quo assumes when `resourceIds` is omitted)
ALL_NUMBERS: Final = ("*",)
#: how long a retired legacy webhook's secret still verifies late legacy retries
#: (Quo's retry schedule spans about 27.6 h)
RETIRED_SECRET_SECONDS: Final = 28 * 3600.0
KEY_PREFIX: Final = "whsec_"


@dataclass(frozen=True, slots=True)
class WantedWebhook:
    """What the tenant's webhook must look like (sorted lists compare as sets)."""

    url: str
    events: tuple[str, ...]
    resource_ids: tuple[str, ...]
    label: str

    @classmethod
    def build(
        cls, tenant: str, url: str, phone_number_ids: list[str], *, contact_events: bool
    ) -> WantedWebhook:
        events = ACTIVITY_EVENTS + (CONTACT_EVENTS if contact_events else ())
        ids = tuple(sorted(set(phone_number_ids))) or ALL_NUMBERS
        return cls(url=url, events=tuple(sorted(events)), resource_ids=ids,
                   label=f"crmsync {tenant}")

    def detail(self) -> str:
        return json.dumps({"system": API_VERSION, "events": list(self.events),
                           "resourceIds": list(self.resource_ids)})

    def drift(self, webhook: VersionedWebhook) -> VersionedWebhookPatch | None:
        """The PATCH that brings `webhook` (on our URL) back to this (status aside), or
        None."""
        patch = VersionedWebhookPatch()
        if tuple(sorted(webhook.events)) != self.events:
            patch.events = list(self.events)
        if tuple(sorted(webhook.resource_ids or ALL_NUMBERS)) != self.resource_ids:
            patch.resource_ids = list(self.resource_ids)
        return patch if patch != VersionedWebhookPatch() else None


@dataclass(frozen=True, slots=True)
class KeptWebhook:
    """The outcome of `ensure()`: which webhook, and what had to be done to it."""

    id: str
    enabled: bool
    created: bool = False
    adopted: bool = False  # a webhook on our URL whose key we did not hold: rotated
    rotated: bool = False
    repaired: tuple[str, ...] = ()  # the fields PATCHed back (events, resourceIds, status)


def is_legacy_name(name: str) -> bool:
    """A stored Quo subscription of the legacy system (`quo:<family>:<n>`)."""
    return name.startswith("quo:") and name != VERSIONED_NAME


class VersionedWebhookKeeper:
    """Creates and repairs one tenant's 2026-03-30 webhook (see the module docstring)."""

    def __init__(self, tenant: str, *, hooks: QuoWebhooksClient, store: Store) -> None:
        self.tenant = tenant
        self._hooks = hooks
        self._store = store

    async def stored(self) -> Subscription | None:
        rows = await self._store.subscriptions.list(self.tenant, "quo")
        return next((s for s in rows if s.name == VERSIONED_NAME), None)

    async def ensure(self, wanted: WantedWebhook, *, enable: bool) -> KeptWebhook:
        """The webhook as `wanted`, its key stored; enabled when `enable` (a webhook
        already enabled stays so either way)."""
        stored = await self.stored()
        ours = [w for w in await self._hooks.list_all() if w.url == wanted.url]
        keep = next((w for w in ours if stored and w.id == stored.remote_id), None)
        adopted = keep is None and bool(ours)
        if keep is None and ours:
            keep = ours[0]
        for other in ours:
            if other is not keep:
                log.warning("deleting Quo webhook %s: a second webhook on %s would deliver"
                            " every event twice", other.id, wanted.url)
                await self._hooks.delete(other.id)
        if keep is None:
            return await self._create(wanted, enable=enable, replaced=stored is not None)
        rotated = False
        has_key = stored is not None and stored.remote_id == keep.id and bool(
            stored.secret and stored.secret.startswith(KEY_PREFIX))
        if not has_key:
            log.warning("Quo webhook %s: its signing key is not in the state: rotating it",
                        keep.id)
            key = await self._hooks.rotate(keep.id)
            await self._save(wanted, keep.id, key, healthy=keep.enabled)
            rotated = True
        patch = wanted.drift(keep) or VersionedWebhookPatch()
        repaired = [name for name, value in (("events", patch.events),
                                             ("resourceIds", patch.resource_ids))
                    if _is_set(value)]
        enabled = keep.enabled
        if enable and not keep.enabled:
            patch.status = "enabled"
            repaired.append("status")
            enabled = True
        if repaired:
            log.warning("Quo webhook %s had drifted (%s): repaired", keep.id,
                        ", ".join(repaired))
            await self._hooks.update(keep.id, patch)
        await self._save(wanted, keep.id, None, healthy=enabled)
        return KeptWebhook(id=keep.id, enabled=enabled, adopted=adopted, rotated=rotated,
                           repaired=tuple(repaired))

    async def enable(self, wanted: WantedWebhook, webhook_id: str) -> None:
        await self._hooks.update(webhook_id, VersionedWebhookPatch(status="enabled"))
        await self._save(wanted, webhook_id, None, healthy=True)

    async def _create(self, wanted: WantedWebhook, *, enable: bool, replaced: bool) -> KeptWebhook:
        created = await self._hooks.create(VersionedWebhookInput(
            url=wanted.url, events=list(wanted.events), resource_ids=list(wanted.resource_ids),
            status="enabled" if enable else "disabled", label=wanted.label,
        ))
        if not created.key:
            # Without its key nothing it delivers verifies: get one now.
            created_key = await self._hooks.rotate(created.id)
        else:
            created_key = created.key
        await self._save(wanted, created.id, created_key, healthy=enable)
        if replaced:
            log.warning("Quo webhook %s was missing: created %s", VERSIONED_NAME, created.id)
        return KeptWebhook(id=created.id, enabled=enable, created=True)

    async def _save(
        self, wanted: WantedWebhook, remote_id: str, key: str | None, *, healthy: bool
    ) -> None:
        # key None keeps the stored one (the upsert's COALESCE).
        await self._store.subscriptions.upsert(Subscription(
            tenant_id=self.tenant, source="quo", name=VERSIONED_NAME, remote_id=remote_id,
            secret=key, url=wanted.url, detail=wanted.detail(), healthy=healthy,
            checked_at=time.time(),
        ))
        metrics.webhook_subscription_healthy.labels(self.tenant, "quo", VERSIONED_NAME).set(
            1 if healthy else 0
        )

    # -- the legacy rows -----------------------------------------------------------------

    async def retire_legacy(self, *, now: float | None = None) -> int:
        """Mark the stored legacy subscriptions retired (their secrets still verify late
        legacy retries) and delete those retired longer than `RETIRED_SECRET_SECONDS`;
        returns how many rows are still kept."""
        now = time.time() if now is None else now
        kept = 0
        for row in await self._store.subscriptions.list(self.tenant, "quo"):
            if not is_legacy_name(row.name):
                continue
            retired_at = retired_since(row)
            if retired_at is None:
                await self._store.subscriptions.upsert(Subscription(
                    tenant_id=row.tenant_id, source="quo", name=row.name,
                    remote_id=row.remote_id, secret=None, url=row.url,
                    detail=json.dumps({"retiredAt": now}), healthy=False, checked_at=now,
                ))
                _forget_gauge(self.tenant, row.name)
                kept += 1
            elif now - retired_at >= RETIRED_SECRET_SECONDS:
                await self._store.subscriptions.delete(self.tenant, "quo", row.name)
            else:
                kept += 1
        return kept


def retired_since(row: Subscription) -> float | None:
    """When a legacy row was retired (its webhook deleted at Quo), or None if active."""
    try:
        detail = json.loads(row.detail)
    except ValueError:
        return None
    value = detail.get("retiredAt") if isinstance(detail, dict) else None
    return float(value) if isinstance(value, int | float) else None


def _is_set(value: object) -> bool:
    return value is not msgspec.UNSET


def _forget_gauge(tenant: str, name: str) -> None:
    with contextlib.suppress(KeyError):  # never set in this process
        metrics.webhook_subscription_healthy.remove(tenant, "quo", name)
