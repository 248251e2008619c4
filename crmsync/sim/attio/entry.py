"""The Attio simulator as `crmsync demo` and `crmsync sim attio` start it."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator

from crmsync.sim.attio.config import AttioSimConfig
from crmsync.sim.attio.server import run_attio_simulator, serve_attio_simulator_forever
from crmsync.sim.attio.state import AttioSim
from crmsync.sim.crms import CrmSimEntry, CrmSimulator, SimOptions, TryLine

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


def _config(options: SimOptions) -> AttioSimConfig:
    config = AttioSimConfig(
        api_keys=options.api_keys or [DEFAULT_KEY], people=options.people, seed=options.seed,
    )
    if options.rate is not None:
        config = dataclasses.replace(config, read_rate_per_second=options.rate)
    return config


@contextlib.asynccontextmanager
async def _run(options: SimOptions) -> AsyncIterator[tuple[CrmSimulator, str]]:
    async with run_attio_simulator(config=_config(options)) as (sim, url):
        yield AttioDemoView(sim), url


async def _serve_forever(host: str, port: int, options: SimOptions) -> None:
    await serve_attio_simulator_forever(host, port, _config(options))


ENTRY = CrmSimEntry(
    title="Attio", default_key=DEFAULT_KEY, webhook_secret=None, run=_run,
    serve_forever=_serve_forever,
)
