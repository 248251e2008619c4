"""`AttioSim`: the simulated workspace, its counters and faults, and test helpers.

Tests mutate people through `add_person` / `update_person` / `delete_person` (or the
`/_sim/` admin routes); each mutation records history like Attio and, unless
`notify=False`, emits `record.*` webhook events, one event per delivery. Writes through
the API (`write_record`: create, PATCH, PUT) do the same with the API token as actor.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from aiohttp import web

from crmsync.sim.attio import model, people
from crmsync.sim.attio.config import AttioSimConfig
from crmsync.sim.attio.delivery import Delivery, DeliveryAttempt, WebhookDeliverer
from crmsync.sim.attio.faults import Faults
from crmsync.sim.attio.model import JSONObject, StoredRecord
from crmsync.sim.attio.ratelimit import RateLimiter
from crmsync.sim.attio.seed import SeedFacts, new_id, seed_workspace
from crmsync.sim.attio.store import RecordStore
from crmsync.sim.attio.subscriptions import Webhook
from crmsync.sim.attio.writes import MULTISELECT


@dataclass(slots=True)
class SimStats:
    """Request counters: `"METHOD /route status"` -> count, plus 429s and injected faults."""

    requests: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    injected_failures: int = 0

    def count(self, method: str, route: str, status: int) -> None:
        self.requests[f"{method} {route} {status}"] += 1
        if status == 429:
            self.rate_limited += 1

    def total(self, *, route: str | None = None, status: int | None = None) -> int:
        return sum(
            n for key, n in self.requests.items()
            if (route is None or key.split(" ")[1] == route)
            and (status is None or key.endswith(f" {status}"))
        )


class AttioSim:
    """State of one simulated Attio workspace."""

    def __init__(self, config: AttioSimConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        seeded = seed_workspace(
            self.rng, config.people, config.workspace_slug, config.workspace_name
        )
        self.workspace = seeded.workspace
        self.facts: SeedFacts = seeded.facts
        self.people = RecordStore("people")
        self.companies = RecordStore("companies")
        for record in seeded.companies:
            self.companies.add(record)
        for record in seeded.people:
            self.people.add(record)
        self.notes: dict[str, JSONObject] = {}
        self.webhooks: dict[str, Webhook] = {}
        self.stats = SimStats()
        # Their own generator: rate-based faults replay from the seed whatever else
        # draws ids.
        self.faults = Faults(rng=random.Random(config.seed + 1))
        self.limiter = RateLimiter(config.read_rate_per_second, config.write_rate_per_second)
        self.deliverer = WebhookDeliverer(
            auto=config.auto_deliver_webhooks,
            max_attempts=config.webhook_max_attempts,
            retry_delay=config.webhook_retry_delay_seconds,
            timeout=config.webhook_timeout_seconds,
            on_exhausted=self._degrade,
        )
        self.api_token_id = new_id(self.rng)
        self._last_created = max((r.created_at for r in seeded.people), default=self.now())

    # --- lookups -------------------------------------------------------------------

    def store(self, object_slug: str) -> RecordStore:
        return self.people if object_slug == "people" else self.companies

    def person(self, record_id: str) -> StoredRecord:
        record = self.people.get(record_id)
        if record is None:
            raise KeyError(record_id)
        return record

    def person_phones(self, record_id: str) -> list[str]:
        return people.current_phones(self.person(record_id))

    def render(self, record: StoredRecord) -> JSONObject:
        return record.render(self.workspace)

    def new_id(self) -> str:
        return new_id(self.rng)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def api_actor(self) -> JSONObject:
        return {"type": "api-token", "id": self.api_token_id}

    # --- mutations -----------------------------------------------------------------

    def add_person(
        self,
        *,
        first_name: str | None = None,
        last_name: str | None = None,
        full_name: str | None = None,
        emails: Iterable[str] = (),
        phones: Iterable[people.PhoneInput] = (),
        job_title: str | None = None,
        company_id: str | None = None,
        notify: bool = True,
    ) -> str:
        """Create a person now; returns the record id. Emits `record.created`."""
        self._check_company(company_id)
        created = self._next_created()
        record = StoredRecord("people", self.new_id(), created)
        actor = self.workspace.member_actor()
        model.creation_values(record, actor=actor)
        initial = {
            "name": people.name_payloads(first_name, last_name, full_name),
            "email_addresses": people.email_payloads(emails),
            "phone_numbers": people.phone_payloads(phones),
            "job_title": people.text_payloads(job_title),
            "company": people.company_payloads(company_id),
        }
        for attribute, payloads in initial.items():
            record.set_values(attribute, payloads, at=created, actor=actor)
        self.people.add(record)
        if notify:
            self._emit("record.created", record)
        return record.record_id

    def update_person(self, record_id: str, *, notify: bool = True, **changes: Any) -> list[str]:
        """Change attributes (closing old values); returns the changed attribute slugs.

        Fields: first_name, last_name, full_name, emails, phones, job_title, company_id.
        Emits one `record.updated` per changed attribute, as Attio does.
        """
        record = self.person(record_id)
        if "company_id" in changes:
            self._check_company(changes["company_id"])
        at = self.now()
        actor = self.workspace.member_actor()
        changed = [
            attribute
            for attribute, payloads in people.change_payloads(record, changes).items()
            if record.set_values(attribute, payloads, at=at, actor=actor)
        ]
        self.people.changed()
        if notify:
            for attribute in changed:
                self._emit("record.updated", record, attribute=attribute)
        return changed

    def delete_person(self, record_id: str, *, notify: bool = True) -> None:
        record = self.people.remove(record_id)
        if record is None:
            raise KeyError(record_id)
        for note_id in [k for k, n in self.notes.items() if n["parent_record_id"] == record_id]:
            del self.notes[note_id]
        if notify:
            self._emit("record.deleted", record)

    def write_record(
        self,
        object_slug: str,
        record_id: str | None,
        values: dict[str, list[JSONObject]],
        *,
        add_to_lists: bool = False,
    ) -> StoredRecord:
        """An API write of validated `values` (`writes.parse_values`): a new record when
        `record_id` is None (`record.created`), else an update (`record.updated` per
        changed attribute). `add_to_lists` (PATCH) adds multiselect values to the
        current ones instead of replacing them (PUT)."""
        actor = self.api_actor()
        store = self.store(object_slug)
        if record_id is None:
            created = self._next_created()
            record = StoredRecord(object_slug, self.new_id(), created)
            model.creation_values(record, actor=actor, actor_type="api-token")
            for attribute, payloads in values.items():
                record.set_values(attribute, payloads, at=created, actor=actor)
            store.add(record)
            self._emit("record.created", record, actor=actor)
            return record
        found = store.get(record_id)
        if found is None:
            raise KeyError(record_id)
        record = found
        at = self.now()
        changed = []
        for attribute, payloads in values.items():
            if add_to_lists and attribute in MULTISELECT:
                payloads = [*payloads, *(_payload_of(v) for v in record.active(attribute))]
            if record.set_values(attribute, payloads, at=at, actor=actor):
                changed.append(attribute)
        store.changed()
        for attribute in changed:
            self._emit("record.updated", record, attribute=attribute, actor=actor)
        return record

    def _next_created(self) -> datetime:
        """Now, but strictly after the last record created (a stable creation order)."""
        created = max(self.now(), self._last_created + timedelta(microseconds=1))
        self._last_created = created
        return created

    def _check_company(self, company_id: object) -> None:
        if company_id is not None and company_id not in self.companies:
            raise KeyError(f"no company {company_id}")

    # --- webhooks ------------------------------------------------------------------

    def _emit(
        self,
        event_type: str,
        record: StoredRecord,
        attribute: str | None = None,
        *,
        actor: JSONObject | None = None,
    ) -> None:
        ids: JSONObject = {
            "workspace_id": self.workspace.workspace_id,
            "object_id": self.workspace.object_id(record.object_slug),
            "record_id": record.record_id,
        }
        if attribute is not None:
            ids["attribute_id"] = self.workspace.attribute_id(record.object_slug, attribute)
        event = {"event_type": event_type, "id": ids,
                 "actor": actor or self.workspace.member_actor()}
        for webhook in list(self.webhooks.values()):
            if webhook.wants(event):
                body = {"webhook_id": webhook.webhook_id, "events": [event]}
                self.deliverer.submit(Delivery(
                    webhook.webhook_id, webhook.target_url, webhook.secret,
                    msgspec.json.encode(body), self.new_id(), event_type, record.record_id,
                ))

    async def deliver_pending(self) -> None:
        """Send queued webhooks and wait until every delivery (and retry) finished."""
        await self.deliverer.deliver_pending()

    def _degrade(self, webhook_id: str) -> None:
        """Every attempt of a delivery failed: Attio marks the webhook degraded."""
        webhook = self.webhooks.get(webhook_id)
        if webhook is not None and webhook.status == "active":
            webhook.status = "degraded"

    def expire_webhook(self, webhook_id: str) -> None:
        """Attio gave up on the webhook (`inactive`): nothing is delivered to it any more."""
        self.webhooks[webhook_id].status = "inactive"

    def remove_webhook(self, webhook_id: str) -> None:
        """The webhook was deleted (by a workspace admin, say)."""
        del self.webhooks[webhook_id]

    async def redeliver_failed(self) -> list[DeliveryAttempt]:
        """Send once more every message no attempt of which was acknowledged (as Attio's
        later retries would); the attempts, in the order the messages were first sent."""
        return await self.deliverer.redeliver_failed()

    async def redeliver_last(self) -> int | None:
        """Send the last delivered message again (same Idempotency-Key); its status."""
        attempt = await self.deliverer.redeliver_last()
        return attempt.status if attempt else None

    async def close(self) -> None:
        await self.deliverer.close()


def _payload_of(value: JSONObject) -> JSONObject:
    return {k: v for k, v in value.items() if k not in model.VALUE_METADATA}


ATTIO_SIM_KEY = web.AppKey("attio_sim", AttioSim)
