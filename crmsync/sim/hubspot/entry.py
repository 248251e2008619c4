"""The HubSpot simulator as `crmsync demo` and `crmsync sim hubspot` start it.

HubSpot's webhooks are the private app's, set up by hand: the entry names the app's
secret (the tenant's `crm_webhook_secret`) and `point_webhooks` sets its target URL.
`SimOptions.rate` (requests per second) becomes HubSpot's 10-second window (x10).
"""

from __future__ import annotations

import dataclasses

from crmsync.sim._kit.entry import crm_entry
from crmsync.sim.crms import TryLine
from crmsync.sim.hubspot.config import DEFAULT_APP_SECRET, HubSpotSimConfig
from crmsync.sim.hubspot.server import run_hubspot_simulator, serve_hubspot_simulator_forever
from crmsync.sim.hubspot.state import HubSpotSim

DEFAULT_KEY = "hubspot-test-key"
PERSON_PROPERTIES = "firstname,lastname,email,phone,mobilephone,jobtitle,company"


class HubSpotDemoView:
    """`CrmSimulator` over a running HubSpot simulator."""

    def __init__(self, sim: HubSpotSim) -> None:
        self.sim = sim

    def record_ids(self) -> list[str]:
        return self.sim.record_ids()

    def person_phones(self, record_id: str) -> list[str]:
        return self.sim.person_phones(record_id)

    def point_webhooks(self, url: str) -> None:
        self.sim.point_webhooks(url)

    def try_lines(self, crm_url: str, api_key: str, record_id: str) -> dict[str, TryLine]:
        auth = f"-H 'authorization: Bearer {api_key}'"
        return {
            "notes": TryLine(
                "the notes in the CRM",
                f"curl -s {auth} '{crm_url}/crm/v4/objects/contacts/{record_id}"
                "/associations/notes'"),
            "change": TryLine(
                "a CRM change -> the Quo contact is updated",
                "curl -s -X PATCH -H 'content-type: application/json' "
                f"-d '{{\"jobtitle\": \"CTO\"}}' {crm_url}/_sim/contacts/{record_id}"),
            "person": TryLine(
                "that CRM person",
                f"curl -s {auth} '{crm_url}/crm/v3/objects/contacts/{record_id}"
                f"?properties={PERSON_PROPERTIES}&associations=companies'"),
        }

    def requests_answered(self) -> int:
        return self.sim.stats.total_requests

    def rate_limited(self) -> int:
        return self.sim.stats.rate_limited


def _with_rate(config: HubSpotSimConfig, rate: int) -> HubSpotSimConfig:
    return dataclasses.replace(config, requests_per_ten_seconds=rate * 10)


ENTRY = crm_entry(
    title="HubSpot", default_key=DEFAULT_KEY, webhook_secret=DEFAULT_APP_SECRET,
    config_type=HubSpotSimConfig, with_rate=_with_rate, run=run_hubspot_simulator,
    serve_forever=serve_hubspot_simulator_forever, view=HubSpotDemoView,
)
