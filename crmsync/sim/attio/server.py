"""Running the simulator on a real socket: for tests (`run_attio_simulator`) and the CLI.

Both go through the shared harness in `_kit.server`; only the URL path and the banner
are Attio's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from crmsync.sim._kit.server import run_app, serve_forever
from crmsync.sim.attio.app import create_attio_app
from crmsync.sim.attio.config import AttioSimConfig
from crmsync.sim.attio.state import ATTIO_SIM_KEY, AttioSim


@contextlib.asynccontextmanager
async def run_attio_simulator(
    host: str = "127.0.0.1", port: int = 0, config: AttioSimConfig | None = None
) -> AsyncIterator[tuple[AttioSim, str]]:
    """Serve a simulator; yields `(sim, "http://HOST:PORT/v2")`, stops it on exit."""
    async with run_app(create_attio_app(config), host, port, path="/v2") as (app, base_url):
        yield app[ATTIO_SIM_KEY], base_url


def _banner(running: tuple[AttioSim, str]) -> list[str]:
    sim, base_url = running
    config = sim.config
    return [
        f"Attio simulator: {base_url}",
        f"API key: {config.api_keys[0] if config.api_keys else '(none)'}",
        f"{len(sim.people)} people, {len(sim.companies)} companies "
        f"(seed {config.seed}); admin routes under {base_url.removesuffix('/v2')}/_sim/",
    ]


async def serve_attio_simulator_forever(
    host: str = "127.0.0.1", port: int = 0, config: AttioSimConfig | None = None
) -> None:
    """For `crmsync sim attio`: print the base URL and key once bound, serve until cancelled."""
    await serve_forever(run_attio_simulator(host, port, config), _banner)
