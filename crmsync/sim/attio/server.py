"""Running the simulator on a real socket: for tests (`run_attio_simulator`) and the CLI.

Both go through the shared harness in `_kit.server`; only the URL path and the banner
are Attio's own.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from crmsync.sim._kit.server import key_line, run_sim, serve_forever
from crmsync.sim.attio.app import create_attio_app
from crmsync.sim.attio.config import AttioSimConfig
from crmsync.sim.attio.state import ATTIO_SIM_KEY, AttioSim


def run_attio_simulator(
    host: str = "127.0.0.1", port: int = 0, config: AttioSimConfig | None = None
) -> AbstractAsyncContextManager[tuple[AttioSim, str]]:
    """Serve a simulator; yields `(sim, "http://HOST:PORT/v2")`, stops it on exit."""
    return run_sim(create_attio_app(config), ATTIO_SIM_KEY, host, port, path="/v2")


def _banner(running: tuple[AttioSim, str]) -> list[str]:
    sim, base_url = running
    config = sim.config
    return [
        f"Attio simulator: {base_url}",
        key_line("API key", config.api_keys),
        f"{len(sim.people)} people, {len(sim.companies)} companies "
        f"(seed {config.seed}); admin routes under {base_url.removesuffix('/v2')}/_sim/",
    ]


async def serve_attio_simulator_forever(
    host: str = "127.0.0.1", port: int = 0, config: AttioSimConfig | None = None
) -> None:
    """For `crmsync sim attio`: print the base URL and key once bound, serve until cancelled."""
    await serve_forever(run_attio_simulator(host, port, config), _banner)
