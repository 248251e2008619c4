"""Running the simulator on a real socket: for tests (a context manager) and the CLI.

`run_quo_simulator` binds with `AppRunner` + `TCPSite` (port 0 picks a free port),
yields the sim and its `/v1` base URL, and cleans everything up on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from crmsync.sim.quo.app import create_quo_app
from crmsync.sim.quo.config import QuoSimConfig
from crmsync.sim.quo.state import QUO_SIM_KEY, QuoSim


def _base_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


@contextlib.asynccontextmanager
async def run_quo_simulator(
    host: str = "127.0.0.1", port: int = 0, config: QuoSimConfig | None = None
) -> AsyncIterator[tuple[QuoSim, str]]:
    """Serve a fresh simulator; yield `(sim, "http://host:port/v1")`."""
    app = create_quo_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = int(runner.addresses[0][1])
        yield app[QUO_SIM_KEY], _base_url(host, bound_port)
    finally:
        await runner.cleanup()


async def serve_quo_simulator_forever(
    host: str = "127.0.0.1", port: int = 0, config: QuoSimConfig | None = None
) -> None:
    """Run until cancelled, after printing the base URL and API key once bound."""
    async with run_quo_simulator(host, port, config) as (sim, base_url):
        admin = base_url.removesuffix("/v1") + "/_sim/stats"
        print(f"Quo simulator listening on {base_url}", flush=True)
        print(f"API key: {sim.api_key}", flush=True)
        print(f"Stats:   {admin}", flush=True)
        await asyncio.Event().wait()  # until cancelled (Ctrl-C, or the caller's task)
