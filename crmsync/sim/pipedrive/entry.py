"""Pipedrive's line in the CRM simulator registry (`crmsync.sim.crms`).

`SimOptions.rate` is requests per second per key; Pipedrive's burst window is 2 s, so the
simulator admits twice that per window.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from crmsync.sim.crms import CrmSimEntry, CrmSimulator, SimOptions
from crmsync.sim.pipedrive.config import PipedriveSimConfig
from crmsync.sim.pipedrive.server import run_pipedrive_simulator, serve_pipedrive_simulator_forever

DEFAULT_KEY = "pipedrive-test-key"


def config_of(options: SimOptions) -> PipedriveSimConfig:
    config = PipedriveSimConfig(
        api_keys=list(options.api_keys) or [DEFAULT_KEY],
        people=options.people, seed=options.seed,
    )
    if options.rate is not None:
        config.burst_limit = max(1, round(options.rate * config.burst_window_seconds))
    return config


@contextlib.asynccontextmanager
async def run(options: SimOptions) -> AsyncIterator[tuple[CrmSimulator, str]]:
    async with run_pipedrive_simulator(config=config_of(options)) as (sim, url):
        yield sim, url


async def serve_forever(host: str, port: int, options: SimOptions) -> None:
    await serve_pipedrive_simulator_forever(host, port, config_of(options))


ENTRY = CrmSimEntry(
    title="Pipedrive",
    default_key=DEFAULT_KEY,
    webhook_secret=None,
    run=run,
    serve_forever=serve_forever,
)
