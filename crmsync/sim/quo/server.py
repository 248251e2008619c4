"""Running the simulator on a real socket: for tests (a context manager) and the CLI.

`run_quo_simulator` serves a fresh app through the shared harness (`_kit.server`),
yields the sim and its `/v1` base URL, and cleans everything up on exit.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from crmsync.sim._kit.server import run_sim, serve_forever
from crmsync.sim.quo.app import create_quo_app
from crmsync.sim.quo.config import QuoSimConfig
from crmsync.sim.quo.state import QUO_SIM_KEY, QuoSim

# In-flight requests (a latency fault, a bulk POST) get this long on shutdown; tests
# open and close many simulators and should not wait on aiohttp's 60 s default.
SHUTDOWN_TIMEOUT_SECONDS = 1.0


def run_quo_simulator(
    host: str = "127.0.0.1", port: int = 0, config: QuoSimConfig | None = None
) -> AbstractAsyncContextManager[tuple[QuoSim, str]]:
    """Serve a fresh simulator; yield `(sim, "http://host:port/v1")`."""
    return run_sim(
        create_quo_app(config), QUO_SIM_KEY, host, port, path="/v1",
        shutdown_timeout=SHUTDOWN_TIMEOUT_SECONDS, url_host=host,
    )


def _banner(running: tuple[QuoSim, str]) -> list[str]:
    sim, base_url = running
    return [
        f"Quo simulator listening on {base_url}",
        f"API key: {sim.api_key}",
        f"Webhooks (2026-03-30): {base_url.removesuffix('/v1')}/webhooks",
        f"Stats:   {base_url.removesuffix('/v1')}/_sim/stats",
    ]


async def serve_quo_simulator_forever(
    host: str = "127.0.0.1", port: int = 0, config: QuoSimConfig | None = None
) -> None:
    """Run until cancelled, after printing the base URL and API key once bound."""
    await serve_forever(run_quo_simulator(host, port, config), _banner)
