"""Moving a tenant from Quo's legacy webhooks to the 2026-03-30 system without a gap.

Quo's own guide deletes the legacy webhook and then enables the new one, and "events
that occur between the two calls are not delivered" (research §7). crmsync instead
runs both for a moment, which the listener makes harmless (the same occurrence through
both systems is stored once, by business key):

    1. legacy    the tenant's legacy webhooks on its URL (`GET /v1/webhooks`)
    2. create    the new webhook, disabled (or the one a previous attempt left), its
                 `whsec_` key stored where the listener looks for it
    3. test      Quo sends a signed test event to the URL (`POST …/events/test`)
    4. verified  the delivery log shows a new delivery succeeded: the listener answers
                 2xx only after verifying the signature and storing the event, so this
                 proves the whole path (DNS, proxy, TLS, key) works for the new system
    5. enable    the new webhook delivers from now on, beside the legacy ones
    6. delete    only now the legacy webhooks go (a deleted legacy webhook cannot be
                 restored); their secrets stay a day for late legacy retries

A failed step raises `MigrationFailed` naming the step and why; nothing after it has
happened, so the legacy webhooks are untouched and keep delivering, and the next
subscription check (or `crmsync quo migrate-webhooks`) tries again, reusing the
disabled webhook. Rejected credentials are not a failed step: they propagate, as
everywhere (the tenant is parked).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from crmsync.net.errors import ApiError, AuthError
from crmsync.quo.client import QuoClient
from crmsync.quo.models import Webhook, WebhookDelivery
from crmsync.quo.webhooks import QuoWebhooksClient
from crmsync.services.quo_subscription import VersionedWebhookKeeper, WantedWebhook

log = logging.getLogger(__name__)

#: the event type of the test event (any type proves the signature path; this one's
#: sample touches nothing: its sample numbers belong to no CRM person)
TEST_EVENT_TYPE: Final = "message.received"
#: how long step 4 waits for the delivery log to show success: Quo retries a failed
#: first attempt after 5 s, and the listener re-reads keys at most every 5 s
VERIFY_WITHIN: Final = 45.0
POLL_EVERY: Final = 0.5
#: failed attempts of the test delivery that fail the step before the deadline
FAILED_ATTEMPTS: Final = 2

#: one line per step, for the CLI (the daemon logs them)
Report = Callable[[str], None]


class MigrationFailed(Exception):  # noqa: N818 (a step failed: the name says it)
    """A step did not succeed; the legacy webhooks are untouched."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"step '{step}': {reason}")
        self.step = step
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MigrationResult:
    webhook_id: str
    deleted_legacy: tuple[str, ...]
    delivery_id: str  # the delivery that proved the listener verifies the new system


def _log_report(line: str) -> None:
    log.info("webhook migration: %s", line)


class WebhookMigration:
    """One tenant's move to the 2026-03-30 system (see the module docstring)."""

    def __init__(
        self,
        tenant: str,
        *,
        quo: QuoClient,
        hooks: QuoWebhooksClient,
        keeper: VersionedWebhookKeeper,
        verify_within: float | None = None,
        poll_every: float = POLL_EVERY,
    ) -> None:
        self.tenant = tenant
        self._quo = quo
        self._hooks = hooks
        self._keeper = keeper
        self._verify_within = VERIFY_WITHIN if verify_within is None else verify_within
        self._poll_every = poll_every

    async def legacy_webhooks(self, url: str) -> list[Webhook]:
        """The tenant's legacy webhooks: those on its URL."""
        return [w for w in await self._quo.list_webhooks() if w.url == url]

    async def run(
        self,
        wanted: WantedWebhook,
        legacy: list[Webhook],
        *,
        report: Report | None = None,
    ) -> MigrationResult:
        """Steps 2-6 for `legacy` (step 1's answer), each reported to `report` (default:
        the log); `MigrationFailed` on a failed step."""
        report = report or _log_report
        report(f"legacy: {len(legacy)} legacy webhooks on {wanted.url}: "
               + ", ".join(w.id for w in legacy))
        async with _step("create", report) as done:
            kept = await self._keeper.ensure(wanted, enable=False)
            how = ("created" if kept.created else "adopted (key rotated)" if kept.adopted
                   else "reused")
            done(f"webhook {kept.id} {how}, {'enabled' if kept.enabled else 'disabled'};"
                 " signing key stored")
        async with _step("test", report) as done:
            before = await self._recent_ids(kept.id)
            sent_at = time.time()
            await self._hooks.send_test_event(kept.id, TEST_EVENT_TYPE)
            done(f"signed {TEST_EVENT_TYPE} test event sent to {wanted.url}")
        async with _step("verified", report) as done:
            delivery = await self._wait_verified(kept.id, before, sent_at)
            done(f"delivery {delivery.id} succeeded: the listener verified the signature")
        if not kept.enabled:
            async with _step("enable", report) as done:
                await self._keeper.enable(wanted, kept.id)
                done(f"webhook {kept.id} enabled")
        deleted: list[str] = []
        async with _step("delete", report) as done:
            for webhook in legacy:
                await self._quo.delete_webhook(webhook.id)
                deleted.append(webhook.id)
            retired = await self._keeper.retire_legacy()
            done(f"legacy webhooks deleted: {', '.join(deleted) or 'none'}"
                 + (f" ({retired} secrets kept a day for late legacy retries)"
                    if retired else ""))
        return MigrationResult(webhook_id=kept.id, deleted_legacy=tuple(deleted),
                               delivery_id=delivery.id)

    async def _recent(self, webhook_id: str) -> list[WebhookDelivery]:
        """The newest page of deliveries (the log is newest first)."""
        return (await self._hooks.delivery_page(webhook_id)).data

    async def _recent_ids(self, webhook_id: str) -> set[str]:
        """The ids of the deliveries before the test (a reused webhook may have some)."""
        return {d.id for d in await self._recent(webhook_id)}

    async def _wait_verified(
        self, webhook_id: str, before: set[str], sent_at: float
    ) -> WebhookDelivery:
        """A delivery new since `before` that succeeded; a disabled webhook has only
        test deliveries, and on one already enabled any success proves the same."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._verify_within
        newest: WebhookDelivery | None = None
        while True:
            fresh = [d for d in await self._recent(webhook_id) if d.id not in before]
            if any(d.status == "success" for d in fresh):
                return next(d for d in fresh if d.status == "success")
            newest = fresh[0] if fresh else newest
            failed = next((d for d in fresh if d.status == "failed"), None)
            if failed is None:
                failed = await self._failed_twice(webhook_id, fresh)
            if failed is not None:
                raise MigrationFailed("verified", await self._why(webhook_id, failed))
            if loop.time() >= deadline:
                waited = time.time() - sent_at
                why = ("no delivery of the test event appeared in the log"
                       if newest is None else await self._why(webhook_id, newest))
                raise MigrationFailed("verified", f"not verified within {waited:.0f} s: {why}")
            await asyncio.sleep(self._poll_every)

    async def _failed_twice(
        self, webhook_id: str, fresh: list[WebhookDelivery]
    ) -> WebhookDelivery | None:
        """A new delivery whose first two attempts failed: Quo's second comes 5 s after
        the first, when the listener has certainly re-read its keys, so a third would
        fail the same way (and comes 5 minutes later)."""
        for delivery in fresh:
            if delivery.status != "sending":
                continue
            detail = await self._hooks.get_delivery(webhook_id, delivery.id)
            if sum(a.status == "failed" for a in detail.attempts) >= FAILED_ATTEMPTS:
                return delivery
        return None

    async def _why(self, webhook_id: str, delivery: WebhookDelivery) -> str:
        """What the listener answered to `delivery`'s newest attempt."""
        detail = await self._hooks.get_delivery(webhook_id, delivery.id)
        if not detail.attempts:
            return f"delivery {delivery.id} is {delivery.status}, not attempted yet"
        attempt = detail.attempts[0]
        code = attempt.response_status_code
        answer = "no answer (timeout or connection refused)" if not code else f"HTTP {code}"
        body = (attempt.response_body or "").strip()[:120]
        hint = (" (the listener did not verify the signature: is the key stored in this"
                " state, is this the daemon behind http.public_url?)" if code == 401 else "")
        return (f"delivery {delivery.id} is {delivery.status}; the listener's answer: "
                f"{answer}{': ' + body if body else ''}{hint}")


class _step:  # noqa: N801 (used as `async with _step(...)`)
    """Runs one step: its API errors become `MigrationFailed(step)`; `done(text)`
    reports what it did."""

    def __init__(self, name: str, report: Report) -> None:
        self._name = name
        self._report = report

    async def __aenter__(self) -> Callable[[str], None]:
        return lambda text: self._report(f"{self._name}: {text}")

    async def __aexit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        if isinstance(error, ApiError) and not isinstance(error, AuthError):
            raise MigrationFailed(self._name, str(error)) from error
