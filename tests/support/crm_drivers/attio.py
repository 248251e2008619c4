"""The Attio simulator as a `CrmDriver` (see the package docstring)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from support.crm_drivers import CrmDriver, PersonView
from support.e2e import ExpectedContact, active_values, expected_contact

API_KEY = "attio-driver-SECRET-key"


@dataclass
class AttioDriver:
    sim: AttioSim
    base_url: str
    name: str = "attio"
    api_key: str = API_KEY
    webhook_secret: str | None = None
    lists_changes: bool = False

    def record_ids(self) -> list[str]:
        return [record.record_id for record in self.sim.people.ordered()]

    def newest_first(self) -> list[str]:
        return list(reversed(self.record_ids()))

    def add_person(
        self, *, first_name: str, last_name: str, emails: list[str], phones: list[str],
        job_title: str | None = None,
    ) -> str:
        return self.sim.add_person(first_name=first_name, last_name=last_name, emails=emails,
                                   phones=phones, job_title=job_title)

    def update_job_title(self, record_id: str, job_title: str) -> None:
        self.sim.update_person(record_id, job_title=job_title)

    def delete_person(self, record_id: str) -> None:
        self.sim.delete_person(record_id)

    def expected_contact(self, record_id: str) -> ExpectedContact:
        return expected_contact(self.sim, record_id)

    def person(self, record_id: str) -> PersonView:
        expected = expected_contact(self.sim, record_id)
        values: dict[str, Any] = self.sim.render(self.sim.person(record_id))["values"]
        name = next(iter(active_values(values.get("name"))), {})
        return PersonView(
            first_name=name.get("first_name") or None, last_name=name.get("last_name") or None,
            emails=expected.emails, phones=expected.phones, job_title=expected.role,
            company=expected.company,
        )

    def notes_of(self, record_id: str) -> list[str]:
        return [f"{n.get('title', '')}\n{n.get('content_markdown', '')}"
                for n in self.sim.notes.values() if n["parent_record_id"] == record_id]

    def point_webhooks(self, url: str) -> None:
        return None

    def forged_webhook(self, url: str) -> tuple[dict[str, str], bytes]:
        body = json.dumps({"webhook_id": "forged", "events": [{
            "event_type": "record.updated",
            "id": {"record_id": self.record_ids()[0]},
        }]}).encode()
        return {"Attio-Signature": "0" * 64, "Content-Type": "application/json"}, body

    def requests_made(self) -> int:
        return self.sim.stats.total()

    def rate_limited(self) -> int:
        return self.sim.stats.rate_limited


@contextlib.asynccontextmanager
async def start(people: int, seed: int) -> AsyncIterator[CrmDriver]:
    config = AttioSimConfig(api_keys=[API_KEY], people=people, seed=seed)
    async with run_attio_simulator(config=config) as (sim, url):
        yield AttioDriver(sim, url)
