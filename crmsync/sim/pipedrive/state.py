"""`PipedriveSim`: the simulated company, its limits and faults, and test helpers.

Every person change goes through `create` / `change` / `remove` here, whether it came
through the API (`change_source: "api"`) or "the app" (the Python helpers and the
`/_sim/` admin routes: `"app"`), and each emits a v2 webhook event to every active
webhook that wants it. A merge is a delete (the loser) plus a change (the survivor).
The `CrmSimulator` side for the demo (`record_ids`, `person_phones`, `try_lines`) is
`demo.py`'s mixin.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from crmsync.sim.pipedrive import events, people
from crmsync.sim.pipedrive.config import PipedriveSimConfig
from crmsync.sim.pipedrive.delivery import Delivery, DeliveryAttempt, PipedriveHooks, basic_auth
from crmsync.sim.pipedrive.demo import DemoMixin
from crmsync.sim.pipedrive.errors import PipedriveError
from crmsync.sim.pipedrive.faults import Faults
from crmsync.sim.pipedrive.limits import BurstLimiter, DailyBudget
from crmsync.sim.pipedrive.model import JSONObject, Note, Organization, Person, Webhook
from crmsync.sim.pipedrive.seed import SeedFacts, seed_company
from crmsync.sim.pipedrive.stats import PipedriveStats
from crmsync.sim.pipedrive.store import PersonStore

PersonInput = str | Mapping[str, object]


class PipedriveSim(DemoMixin):
    """State of one simulated Pipedrive company."""

    def __init__(self, config: PipedriveSimConfig) -> None:
        self.config = config
        seeded = seed_company(random.Random(config.seed), config.people,
                              country=config.company_country, owner_id=config.user_id)
        self.facts: SeedFacts = seeded.facts
        self.persons = PersonStore()
        for person in seeded.persons:
            self.persons.add(person)
        self.orgs: dict[int, Organization] = {o.id: o for o in seeded.orgs}
        self.notes: dict[int, Note] = {}
        self.webhooks: dict[int, Webhook] = {}
        self._next_ids = {"person": len(seeded.persons) + 1, "org": len(seeded.orgs) + 1,
                          "note": 1, "webhook": 1}
        self._event_rng = random.Random(config.seed + 2)
        self.limiter = BurstLimiter(
            config.burst_limit, config.search_burst_limit, config.burst_window_seconds,
            count_rejected=config.count_rejected,
        )
        self.budget = DailyBudget(config.daily_token_budget)
        self.stats = PipedriveStats(self.limiter)
        # Their own generator: rate-based faults replay from the seed whatever else draws.
        self.faults = Faults(rng=random.Random(config.seed + 1))
        self.hooks = PipedriveHooks(
            auto=config.auto_deliver_webhooks, retry_delays=config.webhook_retry_delays,
            timeout=config.webhook_timeout_seconds, on_attempt=self._attempted,
        )
        self.company = events.Company(
            config.company_id, config.user_id, f"{config.company_domain}.pipedrive.com")

    # --- lookups -------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC).replace(microsecond=0)

    def next_id(self, kind: str) -> int:
        value = self._next_ids[kind]
        self._next_ids[kind] = value + 1
        return value

    def live(self, person_id: str | int) -> Person:
        """The live person; KeyError when unknown or deleted."""
        person = self.persons.live(int(person_id))
        if person is None:
            raise KeyError(str(person_id))
        return person

    def person(self, person_id: str | int) -> JSONObject:
        """The person as `GET /api/v2/persons/{id}` shows it; KeyError when not there."""
        return self.live(person_id).render()

    def org_name(self, org_id: int | None) -> str | None:
        org = None if org_id is None else self.orgs.get(org_id)
        return None if org is None else org.name

    def user(self) -> JSONObject:
        c = self.config
        return {"id": c.user_id, "name": c.user_name, "email": c.user_email,
                "is_admin": True, "active_flag": True, "company_id": c.company_id,
                "company_name": c.company_name, "company_domain": c.company_domain,
                "company_country": c.company_country, "locale": c.locale,
                "lang": 1, "timezone_name": c.timezone_name, "timezone_offset": "+00:00",
                "default_currency": "USD", "icon_url": None, "is_you": True}

    def note_json(self, note: Note) -> JSONObject:
        person = None if note.person_id is None else self.persons.get(note.person_id)
        org = None if note.org_id is None else self.orgs.get(note.org_id)
        user = {"email": self.config.user_email, "name": self.config.user_name,
                "icon_url": None, "is_you": True}
        return note.render(person, org, user)

    def notes_of(self, person_id: str | int) -> list[JSONObject]:
        """The person's notes (v1 shape), oldest id first."""
        wanted = int(person_id)
        return [self.note_json(n) for n in self.notes.values() if n.person_id == wanted]

    # --- mutations "in the app" (Python helpers; the admin routes use them too) ---------

    def add_person(
        self, *, name: str | None = None, first_name: str | None = None,
        last_name: str | None = None, emails: Iterable[PersonInput] = (),
        phones: Iterable[PersonInput] = (), job_title: str | None = None,
        org_id: str | int | None = None, notify: bool = True,
    ) -> str:
        """Create a person now; its id. Emits `create` (change_source "app")."""
        fields: JSONObject = {"emails": list(emails), "phones": list(phones),
                              "job_title": job_title, "org_id": org_id}
        fields.update({k: v for k, v in (("name", name), ("first_name", first_name),
                                        ("last_name", last_name)) if v is not None})
        changes = self.app_fields(fields, creating=True)
        return str(self.create(changes, source="app", notify=notify).id)

    def update_person(self, person_id: str | int, *, notify: bool = True, **fields: Any
                      ) -> list[str]:
        """Change fields (name, first_name, last_name, emails, phones, job_title, org_id);
        the names of those that changed. Emits one `change` when anything did."""
        person = self.live(person_id)
        return list(self.change(person, self.app_fields(fields, creating=False),
                                source="app", notify=notify))

    def delete_person(self, person_id: str | int, *, notify: bool = True) -> None:
        self.remove(self.live(person_id), source="app", notify=notify)

    def merge_persons(self, loser_id: str | int, survivor_id: str | int,
                      *, notify: bool = True) -> None:
        """Merge `loser` into `survivor` as the app does: the survivor gains the loser's
        emails, phones (and org and job title where it has none) and notes; the loser is
        gone. Webhooks: `delete` of the loser, then `change` of the survivor."""
        loser, survivor = self.live(loser_id), self.live(survivor_id)
        if loser is survivor:
            raise ValueError("a person cannot be merged into itself")
        changes: JSONObject = {
            "emails": people.merged_lists(survivor.emails, loser.emails),
            "phones": people.merged_lists(survivor.phones, loser.phones),
        }
        if survivor.org_id is None and loser.org_id is not None:
            changes["org_id"] = loser.org_id
        if survivor.job_title is None and loser.job_title is not None:
            changes["job_title"] = loser.job_title
        for note in self.notes.values():
            if note.person_id == loser.id:
                note.person_id = survivor.id
        correlation = self._uuid()
        self.remove(loser, source="app", notify=notify, correlation_id=correlation)
        self.change(survivor, changes, source="app", notify=notify,
                    correlation_id=correlation, always=True)

    def add_org(self, name: str) -> str:
        org = Organization(self.next_id("org"), name, self.now(), self.config.user_id)
        self.orgs[org.id] = org
        return str(org.id)

    def app_fields(self, fields: Mapping[str, Any], *, creating: bool) -> JSONObject:
        """Admin input (lists may hold plain strings); ValueError names a bad field."""
        try:
            return people.parse_fields(fields, creating=creating, strict=True, lenient=True,
                                       org_exists=lambda i: i in self.orgs)
        except PipedriveError as exc:  # the same checks as the API's
            raise ValueError(exc.error) from None

    # --- the one path of every person change ---------------------------------------

    def create(self, changes: Mapping[str, Any], *, source: events.ChangeSource,
               notify: bool = True) -> Person:
        person = people.new_person(self.next_id("person"), changes,
                                   owner_id=self.config.user_id, at=self.now())
        self.persons.add(person)
        if notify:
            self._emit("create", person, None, source)
        return person

    def change(self, person: Person, changes: Mapping[str, Any], *,
               source: events.ChangeSource, notify: bool = True,
               correlation_id: str | None = None, always: bool = False) -> JSONObject:
        previous = people.apply(person, changes, at=self.now())
        if always:  # a merge changes the survivor even when no field of it did
            person.update_time = self.now()
        self.persons.changed()
        if notify and (previous or always):
            self._emit("change", person, previous, source, correlation_id)
        return previous

    def remove(self, person: Person, *, source: events.ChangeSource, notify: bool = True,
               correlation_id: str | None = None) -> None:
        person.is_deleted = True
        person.update_time = self.now()
        self.persons.changed()
        if notify:
            self._emit("delete", person, person.slim(), source, correlation_id)

    # --- webhooks ------------------------------------------------------------------

    def _emit(self, action: events.Action, person: Person, previous: JSONObject | None,
              source: events.ChangeSource, correlation_id: str | None = None) -> None:
        event = events.PersonEvent(
            action, person.id, None if action == "delete" else person.slim(),
            None if action == "create" else previous, source, self._uuid(),
            correlation_id or self._uuid(),
        )
        at = datetime.now(UTC)
        for hook in list(self.webhooks.values()):
            if not hook.wants(action, "person"):
                continue
            authorization = None
            if hook.http_auth_user is not None or hook.http_auth_password is not None:
                authorization = basic_auth(hook.http_auth_user or "",
                                           hook.http_auth_password or "")
            self.hooks.submit(Delivery(
                hook.id, hook.subscription_url, authorization, event.event_id, action,
                str(person.id), events.body(event, self.company, hook.id, at),
            ))

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._event_rng.getrandbits(128), version=4))

    def _attempted(self, attempt: DeliveryAttempt) -> None:
        hook = self.webhooks.get(attempt.webhook_id)
        if hook is not None:
            hook.last_delivery_time = self.now()
            hook.last_http_status = attempt.status

    async def deliver_pending(self) -> None:
        """Send queued webhooks and wait until every delivery (and retry) finished."""
        await self.hooks.drain()

    # --- counters --------------------------------------------------------------------

    def requests_answered(self) -> int:
        """API requests answered so far, any status (401s and 429s included)."""
        return self.stats.total_requests

    def rate_limited(self) -> int:
        """429s answered so far (burst, budget and injected)."""
        return self.stats.rate_limited

    def reset_stats(self) -> None:
        self.stats.reset()

    def reset_budget(self, total: int | None = None) -> None:
        """A new day for the daily token budget (optionally a new size)."""
        self.budget.reset(total)

    async def close(self) -> None:
        await self.hooks.close()


PIPEDRIVE_SIM_KEY = web.AppKey("pipedrive_sim", PipedriveSim)
