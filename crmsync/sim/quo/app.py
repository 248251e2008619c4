"""`create_quo_app`: the simulator as an aiohttp application.

The `QuoSim` state hangs off the app under `QUO_SIM_KEY`; the app's cleanup closes it
(pending bulk timers, the delivery session), so `AppRunner.cleanup()` or the
`aiohttp_client` fixture's teardown leaves nothing behind.
"""

from __future__ import annotations

from aiohttp import web

from crmsync.sim.quo import activity, admin, admin_v2, contacts, events_v2, webhooks, webhooks_v2
from crmsync.sim.quo.config import QuoSimConfig
from crmsync.sim.quo.gateway import gateway
from crmsync.sim.quo.state import QUO_SIM_KEY, QuoSim

# Bulk bodies of a few hundred contacts are legitimate; aiohttp's default is 1 MiB.
MAX_BODY_BYTES = 16 * 1024 * 1024


async def _close_sim(app: web.Application) -> None:
    await app[QUO_SIM_KEY].aclose()


def create_quo_app(config: QuoSimConfig | None = None) -> web.Application:
    """A fresh simulated Quo workspace: v1 under `/v1`, 2026-03-30 webhooks unprefixed."""
    app = web.Application(middlewares=[gateway], client_max_size=MAX_BODY_BYTES)
    app[QUO_SIM_KEY] = QuoSim(config)
    for module in (contacts, webhooks, activity, admin, webhooks_v2, events_v2, admin_v2):
        app.router.add_routes(module.routes)
    app.on_cleanup.append(_close_sim)
    return app
