"""The Attio simulator as `crmsync demo` and `crmsync sim attio` start it."""

from __future__ import annotations

import dataclasses

from crmsync.sim._kit.entry import crm_entry
from crmsync.sim.attio.config import AttioSimConfig
from crmsync.sim.attio.server import run_attio_simulator, serve_attio_simulator_forever
from crmsync.sim.attio.state import AttioSim
from crmsync.sim.crms import TryLine

DEFAULT_KEY = "attio-test-key"


class AttioDemoView:
    """`CrmSimulator` over a running Attio simulator."""

    def __init__(self, sim: AttioSim) -> None:
        self.sim = sim

    def record_ids(self) -> list[str]:
        return [record.record_id for record in self.sim.people]

    def person_phones(self, record_id: str) -> list[str]:
        return self.sim.person_phones(record_id)

    def point_webhooks(self, url: str) -> None:
        return None  # crmsync creates its Attio webhook through the API

    def try_lines(self, crm_url: str, api_key: str, record_id: str) -> dict[str, TryLine]:
        auth = f"-H 'authorization: Bearer {api_key}'"
        admin = crm_url.removesuffix("/v2") + "/_sim"
        return {
            "notes": TryLine("the notes in the CRM", f"curl -s {auth} '{crm_url}/notes?"
                             f"parent_object=people&parent_record_id={record_id}'"),
            "change": TryLine(
                "a CRM change -> the Quo contact is updated",
                "curl -s -X PATCH -H 'content-type: application/json' "
                f"-d '{{\"job_title\": \"CTO\"}}' {admin}/people/{record_id}"),
            "person": TryLine("that CRM person",
                              f"curl -s {auth} {crm_url}/objects/people/records/{record_id}"),
        }

    def requests_answered(self) -> int:
        return self.sim.stats.total()

    def rate_limited(self) -> int:
        return self.sim.stats.rate_limited


def _with_rate(config: AttioSimConfig, rate: int) -> AttioSimConfig:
    return dataclasses.replace(config, read_rate_per_second=rate)


ENTRY = crm_entry(
    title="Attio", default_key=DEFAULT_KEY, webhook_secret=None,
    config_type=AttioSimConfig, with_rate=_with_rate, run=run_attio_simulator,
    serve_forever=serve_attio_simulator_forever, view=AttioDemoView,
)
