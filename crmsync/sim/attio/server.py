"""Running the simulator on a real socket: for tests (`run_attio_simulator`) and the CLI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from crmsync.sim.attio.app import create_attio_app
from crmsync.sim.attio.config import AttioSimConfig
from crmsync.sim.attio.state import ATTIO_SIM_KEY, AttioSim


@contextlib.asynccontextmanager
async def run_attio_simulator(
    host: str = "127.0.0.1", port: int = 0, config: AttioSimConfig | None = None
) -> AsyncIterator[tuple[AttioSim, str]]:
    """Serve a simulator; yields `(sim, "http://HOST:PORT/v2")`, stops it on exit."""
    app = create_attio_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield app[ATTIO_SIM_KEY], f"http://{url_host}:{bound_port}/v2"
    finally:
        await runner.cleanup()


async def serve_attio_simulator_forever(
    host: str = "127.0.0.1", port: int = 0, config: AttioSimConfig | None = None
) -> None:
    """For `crmsync sim attio`: print the base URL and key once bound, serve until cancelled."""
    config = config or AttioSimConfig()
    async with run_attio_simulator(host, port, config) as (sim, base_url):
        print(f"Attio simulator: {base_url}", flush=True)
        print(f"API key: {config.api_keys[0] if config.api_keys else '(none)'}", flush=True)
        print(
            f"{len(sim.people)} people, {len(sim.companies)} companies "
            f"(seed {config.seed}); admin routes under {base_url.removesuffix('/v2')}/_sim/",
            flush=True,
        )
        await asyncio.Event().wait()
