"""Running the simulator on a real socket: for tests (`run_hubspot_simulator`) and the CLI.

Both go through the shared harness in `_kit.server`; only the banner is HubSpot's own.
The base URL is the server's root, as HubSpot's API paths carry their own versions.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from crmsync.sim._kit.server import key_line, run_sim, serve_forever
from crmsync.sim.hubspot.app import create_hubspot_app
from crmsync.sim.hubspot.config import HubSpotSimConfig
from crmsync.sim.hubspot.state import HUBSPOT_SIM_KEY, HubSpotSim


def run_hubspot_simulator(
    host: str = "127.0.0.1", port: int = 0, config: HubSpotSimConfig | None = None
) -> AbstractAsyncContextManager[tuple[HubSpotSim, str]]:
    """Serve a simulator; yields `(sim, "http://HOST:PORT")`, stops it on exit."""
    return run_sim(create_hubspot_app(config), HUBSPOT_SIM_KEY, host, port)


def _banner(running: tuple[HubSpotSim, str]) -> list[str]:
    sim, base_url = running
    config = sim.config
    return [
        f"HubSpot simulator: {base_url}",
        key_line("Private app token", config.api_keys),
        f"App secret (webhook signatures): {config.app_secret}",
        f"{len(sim.record_ids())} contacts, {len(sim.companies)} companies "
        f"(seed {config.seed}, portal {config.portal_id}); admin routes under "
        f"{base_url}/_sim/ (PUT /_sim/webhooks {{\"targetUrl\"}} sets the webhook target)",
    ]


async def serve_hubspot_simulator_forever(
    host: str = "127.0.0.1", port: int = 0, config: HubSpotSimConfig | None = None
) -> None:
    """For `crmsync sim hubspot`: print the URL and token once bound, serve until cancelled."""
    await serve_forever(run_hubspot_simulator(host, port, config), _banner)
