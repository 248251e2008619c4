"""Running the simulator on a real socket: for tests (`run_pipedrive_simulator`) and the
CLI (`serve_pipedrive_simulator_forever`), through the shared `_kit.server` harness."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from crmsync.sim._kit.server import key_line, run_sim, serve_forever
from crmsync.sim.pipedrive.app import create_pipedrive_app
from crmsync.sim.pipedrive.config import PipedriveSimConfig
from crmsync.sim.pipedrive.state import PIPEDRIVE_SIM_KEY, PipedriveSim


def run_pipedrive_simulator(
    host: str = "127.0.0.1", port: int = 0, config: PipedriveSimConfig | None = None
) -> AbstractAsyncContextManager[tuple[PipedriveSim, str]]:
    """Serve a simulator; yields `(sim, "http://HOST:PORT")` (the API root: paths like
    `/api/v2/persons` and `/v1/notes` go after it), stops it on exit."""
    return run_sim(create_pipedrive_app(config), PIPEDRIVE_SIM_KEY, host, port)


def _banner(running: tuple[PipedriveSim, str]) -> list[str]:
    sim, base_url = running
    config = sim.config
    return [
        f"Pipedrive simulator: {base_url}",
        key_line("API key", config.api_keys),
        f"{len(sim.record_ids())} persons, {len(sim.orgs)} organizations "
        f"(seed {config.seed}); admin routes under {base_url}/_sim/",
    ]


async def serve_pipedrive_simulator_forever(
    host: str = "127.0.0.1", port: int = 0, config: PipedriveSimConfig | None = None
) -> None:
    """For `crmsync sim pipedrive`: print the URL and key once bound, serve until cancelled."""
    await serve_forever(run_pipedrive_simulator(host, port, config), _banner)
