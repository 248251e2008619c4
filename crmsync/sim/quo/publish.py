"""One Quo occurrence delivered through every matching webhook of both systems.

`Publisher.prepare` serialises the occurrence once per system — the 2026-03-30
envelope (`data.resource/context/links`, one event id for every new-system webhook)
and, when a legacy webhook takes the event, today's legacy envelope (`data.object`,
its own `EV…` id) — and logs a `pending` delivery per new-system webhook.
`Publication.send` then makes the first attempts (new-system retries continue in the
background). `publish_soon` does the sending in the background, for events fired by
API writes, whose answer must not wait on webhook receivers.

New-system matching: the webhook is enabled, subscribes to the type, and for
`message.*` / `call.*` events its `resourceIds` is `["*"]` or holds the event's
`context.phoneNumberId`; other families ignore `resourceIds` (research §2.3).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from crmsync.sim.quo.delivery import DeliveryResult, SimEvent
from crmsync.sim.quo.delivery_log_v2 import Delivery, SignOverride
from crmsync.sim.quo.payloads_v2 import envelope, resource_id
from crmsync.sim.quo.wire import JsonObject

if TYPE_CHECKING:
    from crmsync.sim.quo.state import QuoSim

FILTERED_FAMILIES = ("message.", "call.")


def matches_v2(webhook: JsonObject, event_type: str, phone_number_id: str | None) -> bool:
    if webhook["status"] != "enabled" or event_type not in webhook["events"]:
        return False
    if not event_type.startswith(FILTERED_FAMILIES):
        return True
    resources: list[str] = webhook["resourceIds"]
    return "*" in resources or phone_number_id is None or phone_number_id in resources


@dataclass(slots=True)
class Publication:
    """What one occurrence became: its event, deliveries, and the legacy event if any."""

    event_id: str
    event_type: str
    resource: JsonObject
    body: bytes
    deliveries: list[Delivery]
    legacy: SimEvent | None
    legacy_results: list[DeliveryResult] = field(default_factory=list)

    @property
    def envelope(self) -> JsonObject:
        """The new-system envelope, as every new-system webhook received it."""
        decoded: JsonObject = msgspec.json.decode(self.body)
        return decoded

    @property
    def ok(self) -> bool:
        """Every delivery of both systems has succeeded so far."""
        return all(d.ok for d in self.deliveries) and all(r.ok for r in self.legacy_results)

    @property
    def empty(self) -> bool:
        return not self.deliveries and self.legacy is None


class Publisher:
    """Publishes occurrences of the simulated workspace (see the module docstring)."""

    def __init__(self, sim: QuoSim) -> None:
        self._sim = sim

    def prepare(
        self,
        event_type: str,
        resource: JsonObject,
        context: JsonObject | None = None,
        links: JsonObject | None = None,
        *,
        event_id: str | None = None,
        sign: SignOverride | None = None,
    ) -> Publication:
        sim = self._sim
        if context is None or links is None:
            default_context, default_links = sim.payloads.default_parts(event_type, resource)
            context = default_context if context is None else context
            links = default_links if links is None else links
        event_id = event_id or sim.hook_ids.event()
        body = msgspec.json.encode(envelope(event_id, event_type, resource, context, links))
        phone = context.get("phoneNumberId")
        business_id = resource_id(event_type, resource)
        deliveries = [
            sim.hooks.create(webhook["id"], event_type, body, event_id=event_id,
                             resource_id=business_id, override=sign)
            for webhook in sim.webhooks_v2.values()
            if matches_v2(webhook, event_type, phone if isinstance(phone, str) else None)
        ]
        legacy = None
        legacy_object = None
        if any(event_type in w["events"] for w in sim.webhooks.values()):
            legacy_object = sim.legacy_objects.legacy_object(event_type, resource, context)
        if legacy_object is not None:
            legacy = sim.build_event(event_type, legacy_object)
            if legacy.targets:
                sim.deliverer.history.append(legacy)
            else:
                legacy = None
        return Publication(event_id, event_type, resource, body, deliveries, legacy)

    async def publish(
        self,
        event_type: str,
        resource: JsonObject,
        context: JsonObject | None = None,
        links: JsonObject | None = None,
        *,
        event_id: str | None = None,
        sign: SignOverride | None = None,
    ) -> Publication:
        publication = self.prepare(
            event_type, resource, context, links, event_id=event_id, sign=sign
        )
        await self.send(publication)
        return publication

    def subscribed(self, event_type: str) -> bool:
        """Whether any webhook of either system takes `event_type` at all."""
        webhooks = (*self._sim.webhooks_v2.values(), *self._sim.webhooks.values())
        return any(event_type in w["events"] for w in webhooks)

    def publish_soon(
        self, event_type: str, resource: JsonObject, context: JsonObject, links: JsonObject
    ) -> Publication | None:
        """Prepare now (the payload is what the state is now), send in the background.

        Nothing at all (None) when no webhook takes the type: bulk traffic stays cheap.
        """
        if not self.subscribed(event_type):
            return None
        publication = self.prepare(event_type, resource, context, links)
        if not publication.empty:
            self._sim.hooks.http.spawn(
                self.send(publication), name=f"quo-sim-publish-{publication.event_id}"
            )
        return publication

    async def send(self, publication: Publication) -> None:
        """The first attempts of every delivery of both systems, concurrently."""
        jobs = asyncio.gather(*(self._sim.hooks.deliver(d) for d in publication.deliveries))
        if publication.legacy is None:
            await jobs
        else:
            legacy = self._sim.deliverer.send(publication.legacy)
            publication.legacy_results, _ = await asyncio.gather(legacy, jobs)
