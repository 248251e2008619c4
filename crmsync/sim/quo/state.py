"""`QuoSim`: one simulated Quo workspace, its API keys, counters and test hooks.

Reach it from the app with `app[QUO_SIM_KEY]`. Tests read counters (`stats`, a
`QuoSimStats`; shortcuts `count()`, `rate_limited`, `max_in_any_window`; everything
as JSON-ready `snapshot()`), set `faults` and
`bulk_never_visible`, add activity with `add_message` & co., and push signed legacy
events with `deliver_event` / `redeliver`.

The 2026-03-30 webhook system lives beside the legacy one: `webhooks_v2` (with their
`whsec_` keys), the delivery log `hooks` (`HookDeliverer`), and `publish()`, which
delivers one occurrence through the matching webhooks of both systems. The one-call
helpers (`sms`, `call_completed`, `summary`, `edit_contact_in_app`, ...) come from
`OccurrenceHelpers`. Call `aclose()` when used without the app (the app's cleanup
does it otherwise).
"""

from __future__ import annotations

import random
import time
from typing import Any

import msgspec
from aiohttp import web

from crmsync.sim.quo.bulk import BulkQueue
from crmsync.sim.quo.config import QuoSimConfig
from crmsync.sim.quo.contact_store import ContactStore
from crmsync.sim.quo.delivery import Deliverer, DeliveryResult, DeliveryTarget, SimEvent, matches
from crmsync.sim.quo.delivery_log_v2 import HookIds, SignOverride
from crmsync.sim.quo.delivery_v2 import HookDeliverer
from crmsync.sim.quo.faults import Faults, fault_settings
from crmsync.sim.quo.legacy_objects import LegacyObjects
from crmsync.sim.quo.occurrences import OccurrenceHelpers
from crmsync.sim.quo.payloads_v2 import Payloads
from crmsync.sim.quo.publish import Publication, Publisher
from crmsync.sim.quo.ratelimit import SlidingWindowGate
from crmsync.sim.quo.stats import QuoSimStats
from crmsync.sim.quo.wire import IdFactory, JsonObject, now_iso
from crmsync.sim.quo.workspace import Workspace

WEBHOOK_API_VERSION = "v4"  # what API-created webhooks deliver


class QuoSim(OccurrenceHelpers):
    """The simulator's whole state; the aiohttp routes are thin views over it."""

    def __init__(self, config: QuoSimConfig | None = None) -> None:
        self.config = config or QuoSimConfig()
        self.rng = random.Random(self.config.seed)
        self.ids = IdFactory(self.rng)
        self.gate = SlidingWindowGate(
            self.config.requests_per_second,
            self.config.window_seconds,
            count_rejected=self.config.count_rejected,
        )
        self._key_active_from: dict[str, float] = {}
        for key in self.config.api_keys:
            self.add_api_key(key)
        # Their own generator: rate-based faults replay from the seed whatever else
        # draws ids.
        self.faults = Faults(rng=random.Random(self.config.seed + 1))
        self.contacts = ContactStore(self.ids, self.config.custom_fields)
        self.bulk = BulkQueue(self.contacts, self.rng, self.config.bulk_visibility_delay)
        self.workspace = Workspace(
            self.ids, self.rng, self.config.phone_numbers, self.contacts.ids_with_phone
        )
        self.contacts.default_user_id = self.workspace.owner["id"]
        self.webhooks: dict[str, JsonObject] = {}
        self.deliverer = Deliverer()
        self.stats = QuoSimStats(self.gate)
        # The 2026-03-30 system draws its ids from its own generator.
        self.hook_ids = HookIds(random.Random(self.config.seed + 2))
        self.webhooks_v2: dict[str, JsonObject] = {}
        self.hooks = HookDeliverer(
            self.webhooks_v2, self.hook_ids, self.config.webhook_retry_schedule
        )
        self.payloads = Payloads(self.workspace, self.contacts)
        self.legacy_objects = LegacyObjects(self.workspace, self.contacts)
        self.publisher = Publisher(self)
        if self.config.api_writes_fire_contact_events:
            self.bulk.on_create = self.contact_written

    # -- keys and counters ------------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The first configured key, for tests and the CLI banner."""
        return self.config.api_keys[0]

    def add_api_key(self, key: str) -> None:
        """Accept `key` once `key_activation_delay` has passed (401 before that)."""
        self._key_active_from[key] = time.monotonic() + self.config.key_activation_delay

    def key_is_active(self, key: str | None) -> bool:
        active_from = self._key_active_from.get(key or "")
        return active_from is not None and time.monotonic() >= active_from

    @property
    def rate_limited(self) -> int:
        """429s answered so far (rate limit and forced bursts)."""
        return self.stats.rate_limited

    @property
    def max_in_any_window(self) -> dict[str, int]:
        """Per key: most arrivals (admitted or not) seen in any sliding window."""
        return self.stats.max_in_any_window

    def count(self, method: str, route: str, status: int | None = None) -> int:
        """Requests seen for a route template, e.g. `count("POST", "/v1/contacts", 201)`."""
        return self.stats.count(method, route, status)

    @property
    def bulk_never_visible(self) -> set[str]:
        """externalIds that bulk create accepts but never makes visible (test hook)."""
        return self.bulk.never_visible

    @bulk_never_visible.setter
    def bulk_never_visible(self, value: set[str]) -> None:
        self.bulk.never_visible = value

    def snapshot(self) -> dict[str, Any]:
        """Everything `GET /_sim/stats` reports."""
        bulk = self.bulk.counters
        return {
            "requests": self.stats.by_route(),
            "requests_total": self.stats.total_requests,
            "rate_limited": self.stats.rate_limited,
            "max_in_any_window": self.max_in_any_window,
            "keys": {
                key: {"arrivals": w.arrivals, "rejected": w.rejected,
                      "max_in_any_window": w.max_in_any_window}
                for key, w in self.gate.keys.items()
            },
            "contacts": len(self.contacts.contacts),
            "contacts_pending": self.bulk.pending_count,
            "contacts_deleted": self.contacts.deleted,
            "bulk_dropped": bulk.dropped,
            "bulk": {
                "accepted": bulk.accepted, "materialised": bulk.materialised,
                "dropped_invalid": bulk.dropped_invalid,
                "dropped_duplicate": bulk.dropped_duplicate, "never_visible": bulk.never_visible,
            },
            "webhooks": len(self.webhooks),
            "deliveries": {
                "sent": self.deliverer.counters.sent,
                "succeeded": self.deliverer.counters.succeeded,
                "failed": self.deliverer.counters.failed,
            },
            "webhooks_v2": len(self.webhooks_v2),
            "deliveries_v2": {
                "attempts": self.hooks.counters.attempts,
                "succeeded": self.hooks.counters.succeeded,
                "failed": self.hooks.counters.failed,
                "manual": self.hooks.counters.manual,
                "by_status": self.hooks.by_status(),
            },
            "faults": fault_settings(self.faults),
        }

    def reset_stats(self) -> None:
        """Zero the request counters and window maxima (data and faults stay)."""
        self.stats.reset()

    # -- activity helpers (see Workspace) ---------------------------------------------

    def add_message(self, participant: str, text: str, **kwargs: Any) -> JsonObject:
        return self.workspace.add_message(participant, text, **kwargs)

    def add_call(self, participants: list[str], **kwargs: Any) -> JsonObject:
        return self.workspace.add_call(participants, **kwargs)

    def add_call_summary(self, call_id: str, summary: list[str], **kwargs: Any) -> JsonObject:
        return self.workspace.add_call_summary(call_id, summary, **kwargs)

    def add_call_transcript(
        self, call_id: str, dialogue: list[tuple[str, str | None]], **kwargs: Any
    ) -> JsonObject:
        return self.workspace.add_call_transcript(call_id, dialogue, **kwargs)

    # -- webhook events ---------------------------------------------------------------

    def build_event(
        self,
        event_type: str,
        data_object: JsonObject,
        *,
        event_id: str | None = None,
        resource_id: str | None = None,
        deep_link: str | None = None,
        envelope_type: str | None = None,
    ) -> SimEvent:
        """Serialise the v1 envelope once and pick the webhooks it goes to."""
        data: JsonObject = {"object": data_object}
        if deep_link is not None:
            data["deepLink"] = deep_link
        event_id = event_id or self.ids.prefixed("EV")
        envelope: JsonObject = {
            "id": event_id,
            "object": "event",
            "apiVersion": WEBHOOK_API_VERSION,
            "createdAt": now_iso(),
            "type": envelope_type or event_type,
            "data": data,
        }
        resource = resource_id or self.workspace.resource_of(data_object)
        targets = [
            DeliveryTarget(w["id"], w["url"], w["key"])
            for w in self.webhooks.values()
            if matches(w, event_type, resource)
        ]
        return SimEvent(event_id, event_type, msgspec.json.encode(envelope), targets)

    async def deliver_event(
        self,
        event_type: str,
        data_object: JsonObject,
        *,
        event_id: str | None = None,
        resource_id: str | None = None,
        deep_link: str | None = None,
        envelope_type: str | None = None,
        signing_key: str | None = None,
        timestamp_ms: int | None = None,
        omit_signature: bool = False,
    ) -> list[DeliveryResult]:
        """POST a signed event to every enabled webhook subscribed to it.

        `resource_id` defaults to the object's `phoneNumberId` (or its call's).
        `envelope_type` overrides the envelope's `type` (e.g. "callSummary") while
        `event_type` still selects the webhooks. `signing_key`, `timestamp_ms` and
        `omit_signature` produce bad signatures for negative tests.
        """
        event = self.build_event(
            event_type, data_object, event_id=event_id, resource_id=resource_id,
            deep_link=deep_link, envelope_type=envelope_type,
        )
        self.deliverer.history.append(event)
        return await self.deliverer.send(
            event, signing_key=signing_key, timestamp_ms=timestamp_ms,
            omit_signature=omit_signature,
        )

    async def redeliver(self, event: SimEvent, *, resign: bool = False) -> list[DeliveryResult]:
        """Send `event` again: identical bytes and headers, or freshly signed."""
        return await self.deliverer.send(event, resign=resign)

    async def publish(
        self,
        event_type: str,
        resource: JsonObject,
        *,
        context: JsonObject | None = None,
        links: JsonObject | None = None,
        event_id: str | None = None,
        sign: SignOverride | None = None,
    ) -> Publication:
        """Deliver one occurrence through every matching webhook of both systems.

        New system: the envelope `id` (`event_id`, generated if None) is the same for
        every webhook; each delivery is signed, logged and retried on the schedule.
        Legacy: the same occurrence as `data.object`, when a legacy webhook takes it.
        `context` and `links` default to what the workspace knows about the resource.
        Returns after the first attempts; `sign` corrupts the first attempt's
        signature (negative tests).
        """
        return await self.publisher.publish(
            event_type, resource, context, links, event_id=event_id, sign=sign
        )

    async def aclose(self) -> None:
        """Cancel pending bulk timers and retries, close the delivery sessions."""
        self.bulk.close()
        await self.hooks.close()
        await self.deliverer.close()


QUO_SIM_KEY = web.AppKey("quo_sim", QuoSim)
