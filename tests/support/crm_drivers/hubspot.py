"""The HubSpot simulator as the cross-CRM suite drives it (`CrmDriver`).

Changes are made "in the HubSpot app" (the simulator's own methods), so the private
app's webhooks follow when its target URL is set (`point_webhooks`). What a person
should look like in Quo is computed here from the simulator's stored contact, written
out independently of the product's adapter: phones are `phone` then `mobilephone`
parsed in `hs_country_region_code` (a number without + and without a region cannot be
placed and is dropped), emails `email` then `hs_additional_emails`, the company the
primary associated company's name (else the first associated one's, else the free-text
`company` property), the role `jobtitle`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from crmsync.sim.hubspot import CrmObject, HubSpotSim, HubSpotSimConfig, run_hubspot_simulator
from crmsync.sim.hubspot.hooks import sign_v3
from support.crm_drivers import PersonView
from support.crm_drivers.common import SimDriver
from support.e2e import ExpectedContact, e164

API_KEY = "hubspot-e2e-SECRET-token"
APP_SECRET = "hubspot-e2e-app-secret"
WRONG_SECRET = "not-the-app-secret"


@dataclass
class HubSpotDriver(SimDriver[HubSpotSim]):
    name: str = "hubspot"
    api_key: str = API_KEY
    webhook_secret: str | None = APP_SECRET
    #: search filters on `lastmodifieddate`: a poll reads only what changed
    lists_changes: bool = True

    def add_person(
        self, *, first_name: str, last_name: str, emails: list[str], phones: list[str],
        job_title: str | None = None,
    ) -> str:
        """HubSpot has two phone fields: phones beyond the second are not kept."""
        return self.sim.add_contact(
            firstname=first_name, lastname=last_name,
            email=emails[0] if emails else None,
            hs_additional_emails=";".join(emails[1:]) or None,
            phone=phones[0] if phones else None,
            mobilephone=phones[1] if len(phones) > 1 else None,
            jobtitle=job_title,
        )

    def update_job_title(self, record_id: str, job_title: str) -> None:
        self.sim.update_contact(record_id, jobtitle=job_title)

    def delete_person(self, record_id: str) -> None:
        self.sim.delete_contact(record_id)

    def expected_contact(self, record_id: str) -> ExpectedContact:
        contact = self.sim.contact(record_id)
        props = contact.properties
        emails = self._emails(contact)
        return ExpectedContact(
            external_id=record_id,
            source_url=(f"https://app.hubspot.com/contacts/{self.sim.config.portal_id}"
                        f"/record/0-1/{record_id}"),
            first_name=props.get("firstname") or None,
            last_name=props.get("lastname") or None,
            full_name=None,
            company=self._company(contact),
            role=props.get("jobtitle") or None,
            emails=emails,
            phones=self._phones(contact),
        )

    def person(self, record_id: str) -> PersonView:
        contact = self.sim.contact(record_id)
        props = contact.properties
        return PersonView(
            first_name=props.get("firstname") or None,
            last_name=props.get("lastname") or None,
            emails=self._emails(contact), phones=self._phones(contact),
            job_title=props.get("jobtitle") or None, company=self._company(contact),
        )

    def notes_of(self, record_id: str) -> list[str]:
        return [str(n["properties"].get("hs_note_body") or "")
                for n in self.sim.notes_of(record_id)]

    def point_webhooks(self, url: str) -> None:
        self.sim.point_webhooks(url)

    def forged_webhook(self, url: str) -> tuple[dict[str, str], bytes]:
        """A fresh `contact.propertyChange` batch for `url`, signed with the wrong secret."""
        record_id = self.record_ids()[0]
        timestamp = time.time_ns() // 1_000_000
        body = json.dumps([{
            "eventId": 987_654, "subscriptionId": 1304, "portalId": self.sim.config.portal_id,
            "appId": self.sim.config.app_id, "occurredAt": timestamp,
            "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
            "objectId": int(record_id), "propertyName": "jobtitle", "propertyValue": "Forged",
            "changeSource": "CRM_UI", "sourceId": "userId:1",
        }]).encode()
        headers = {
            "Content-Type": "application/json",
            "X-HubSpot-Signature-v3": sign_v3(WRONG_SECRET, "POST", url, body, timestamp),
            "X-HubSpot-Request-Timestamp": str(timestamp),
            "X-HubSpot-Signature-Version": "v3",
        }
        return headers, body

    def requests_made(self) -> int:
        return self.sim.stats.total_requests

    def rate_limited(self) -> int:
        return self.sim.stats.rate_limited

    # -- INTERFACE §5, from the stored contact ---------------------------------------------

    @staticmethod
    def _emails(contact: CrmObject) -> tuple[str, ...]:
        props = contact.properties
        extra = (props.get("hs_additional_emails") or "").split(";")
        found = [props.get("email") or "", *extra]
        return tuple(dict.fromkeys(e.strip() for e in found if e.strip()))

    @staticmethod
    def _phones(contact: CrmObject) -> tuple[str, ...]:
        props = contact.properties
        region = props.get("hs_country_region_code") or None
        found = (e164(props.get(name), region) for name in ("phone", "mobilephone"))
        return tuple(dict.fromkeys(p for p in found if p))

    def _company(self, contact: CrmObject) -> str | None:
        associated = list(contact.links.get("companies", []))
        if contact.primary_company in associated:
            associated.remove(contact.primary_company)
            associated.insert(0, contact.primary_company)
        for company_id in associated:
            company = self.sim.companies.get(company_id)
            if company is not None and not company.archived and company.properties.get("name"):
                return company.properties["name"]
        return contact.properties.get("company") or None


@contextlib.asynccontextmanager
async def start(people: int, seed: int) -> AsyncIterator[HubSpotDriver]:
    config = HubSpotSimConfig(api_keys=[API_KEY], people=people, seed=seed,
                              app_secret=APP_SECRET)
    async with run_hubspot_simulator(config=config) as (sim, base_url):
        yield HubSpotDriver(sim, base_url)
