"""The Pipedrive simulator as a `CrmDriver` for the CRM-neutral end-to-end suite.

What the CRM holds is read from the simulator's own records and turned into crmsync's
terms here, independently of the product's adapter: phones parsed with libphonenumber
(national numbers in the company's country, invalid ones dropped), emails as typed in
order, the organization's name as company, the job title as role, and the web URL
`https://{company_domain}.pipedrive.com/person/{id}`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from crmsync.sim.pipedrive import (
    PipedriveSim,
    PipedriveSimConfig,
    basic_auth,
    run_pipedrive_simulator,
)
from support.crm_drivers import CrmDriver, PersonView
from support.crm_drivers.common import SimDriver
from support.e2e import ExpectedContact, e164

API_KEY = "pipedrive-e2e-SECRET-key"
#: short retries: a test that refuses a delivery should not wait long for the next one
RETRY_DELAYS = (0.05, 0.2, 0.5)


@dataclass
class PipedriveDriver(SimDriver[PipedriveSim]):
    """Acts on the simulator as a person in the Pipedrive app would."""

    name: str = "pipedrive"
    api_key: str = API_KEY
    webhook_secret: str | None = None
    lists_changes: bool = True

    def add_person(
        self, *, first_name: str, last_name: str, emails: list[str], phones: list[str],
        job_title: str | None = None,
    ) -> str:
        return self.sim.add_person(first_name=first_name, last_name=last_name,
                                   emails=emails, phones=phones, job_title=job_title)

    def update_job_title(self, record_id: str, job_title: str) -> None:
        self.sim.update_person(record_id, job_title=job_title)

    def delete_person(self, record_id: str) -> None:
        self.sim.delete_person(record_id)

    def _raw(self, record_id: str) -> dict[str, Any]:
        return self.sim.person(record_id)

    def _phones(self, raw: dict[str, Any]) -> tuple[str, ...]:
        country = self.sim.config.company_country
        return tuple(dict.fromkeys(
            p for p in (e164(str(v["value"]), country) for v in raw["phones"]) if p
        ))

    def _emails(self, raw: dict[str, Any]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(
            value for e in raw["emails"] if "@" in (value := str(e["value"]).strip())
        ))

    def _company(self, raw: dict[str, Any]) -> str | None:
        org = self.sim.orgs.get(raw["org_id"]) if raw["org_id"] is not None else None
        return None if org is None else org.name

    def expected_contact(self, record_id: str) -> ExpectedContact:
        raw = self._raw(record_id)
        emails = self._emails(raw)
        return ExpectedContact(
            external_id=str(raw["id"]),
            source_url=(f"https://{self.sim.config.company_domain}.pipedrive.com"
                        f"/person/{raw['id']}"),
            first_name=raw["first_name"] or None,
            last_name=raw["last_name"] or None,
            full_name=raw["name"] or None,
            company=self._company(raw),
            role=raw["job_title"] or None,
            emails=emails,
            phones=self._phones(raw),
        )

    def person(self, record_id: str) -> PersonView:
        raw = self._raw(record_id)
        return PersonView(
            first_name=raw["first_name"], last_name=raw["last_name"],
            emails=self._emails(raw), phones=self._phones(raw),
            job_title=raw["job_title"], company=self._company(raw),
        )

    def notes_of(self, record_id: str) -> list[str]:
        return [str(n["content"]) for n in self.sim.notes_of(record_id)]

    def point_webhooks(self, url: str) -> None:
        """Nothing to do: crmsync creates its Pipedrive webhooks through the API."""

    def forged_webhook(self, url: str) -> tuple[dict[str, str], bytes]:
        """A well-formed v2 `change.person` for a live person, sent with the webhook's
        user (if crmsync created one for `url`) and a wrong password."""
        hook = next((w for w in self.sim.webhooks.values() if w.subscription_url == url),
                    None)
        user = hook.http_auth_user if hook and hook.http_auth_user else "crmsync"
        person = self.sim.live(self.record_ids()[0])
        body = {
            "data": person.slim(),
            "previous": {"job_title": "Intern"},
            "meta": {
                "action": "change", "entity": "person", "entity_id": str(person.id),
                "company_id": str(self.sim.config.company_id),
                "user_id": str(self.sim.config.user_id),
                "id": "00000000-0000-4000-8000-000000000001",
                "correlation_id": "00000000-0000-4000-8000-000000000002",
                "timestamp": "2026-01-01T10:00:00.000Z", "change_source": "app",
                "is_bulk_edit": False, "attempt": 1,
                "webhook_id": str(hook.id if hook else 1), "version": "2.0",
                "host": f"{self.sim.config.company_domain}.pipedrive.com",
            },
        }
        headers = {"Content-Type": "application/json",
                   "Authorization": basic_auth(user, "not-the-password")}
        return headers, json.dumps(body).encode()

    def requests_made(self) -> int:
        return self.sim.requests_answered()

    def rate_limited(self) -> int:
        return self.sim.rate_limited()


@contextlib.asynccontextmanager
async def start(people: int, seed: int) -> AsyncIterator[PipedriveDriver]:
    config = PipedriveSimConfig(api_keys=[API_KEY], people=people, seed=seed,
                                webhook_retry_delays=RETRY_DELAYS)
    async with run_pipedrive_simulator(config=config) as (sim, base_url):
        yield PipedriveDriver(sim, base_url)


def _is_a_crm_driver(driver: PipedriveDriver) -> CrmDriver:
    """Never called: mypy checks here that the driver satisfies the Protocol."""
    return driver
