"""Running the simulator on a real socket: for tests (`run_pipedrive_simulator`) and the
CLI (`serve_pipedrive_simulator_forever`), through the shared `_kit.server` harness."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from crmsync.sim._kit.server import run_app, serve_forever
from crmsync.sim.pipedrive.app import create_pipedrive_app
from crmsync.sim.pipedrive.config import PipedriveSimConfig
from crmsync.sim.pipedrive.state import PIPEDRIVE_SIM_KEY, PipedriveSim


@contextlib.asynccontextmanager
async def run_pipedrive_simulator(
    host: str = "127.0.0.1", port: int = 0, config: PipedriveSimConfig | None = None
) -> AsyncIterator[tuple[PipedriveSim, str]]:
    """Serve a simulator; yields `(sim, "http://HOST:PORT")` (the API root: paths like
    `/api/v2/persons` and `/v1/notes` go after it), stops it on exit."""
    async with run_app(create_pipedrive_app(config), host, port) as (app, base_url):
        yield app[PIPEDRIVE_SIM_KEY], base_url


def _banner(running: tuple[PipedriveSim, str]) -> list[str]:
    sim, base_url = running
    config = sim.config
    return [
        f"Pipedrive simulator: {base_url}",
        f"API key: {config.api_keys[0] if config.api_keys else '(none)'}",
        f"{len(sim.record_ids())} persons, {len(sim.orgs)} organizations "
        f"(seed {config.seed}); admin routes under {base_url}/_sim/",
    ]


async def serve_pipedrive_simulator_forever(
    host: str = "127.0.0.1", port: int = 0, config: PipedriveSimConfig | None = None
) -> None:
    """For `crmsync sim pipedrive`: print the URL and key once bound, serve until cancelled."""
    await serve_forever(run_pipedrive_simulator(host, port, config), _banner)
