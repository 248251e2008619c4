"""`create_hubspot_app(config)`: the aiohttp application of one simulated portal.

The `HubSpotSim` state is reachable as `app[HUBSPOT_SIM_KEY]`. Its webhook deliverer
(background batches and the one outgoing `ClientSession`) is torn down in a cleanup
context, so closing the app never leaves a session or task behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from crmsync.sim.hubspot import account, admin
from crmsync.sim.hubspot.associations import add_association_routes
from crmsync.sim.hubspot.config import HubSpotSimConfig
from crmsync.sim.hubspot.middleware import hubspot_middleware
from crmsync.sim.hubspot.model import SCHEMAS
from crmsync.sim.hubspot.objects import add_read_routes
from crmsync.sim.hubspot.state import HUBSPOT_SIM_KEY, HubSpotSim
from crmsync.sim.hubspot.writes import add_write_routes

# Notes are at most 65,536 characters; a body far beyond that is surely a client bug.
MAX_BODY_BYTES = 4 * 1024 * 1024


def create_hubspot_app(config: HubSpotSimConfig | None = None) -> web.Application:
    sim = HubSpotSim(config or HubSpotSimConfig())
    app = web.Application(middlewares=[hubspot_middleware], client_max_size=MAX_BODY_BYTES)
    app[HUBSPOT_SIM_KEY] = sim
    for schema in SCHEMAS.values():
        add_read_routes(app, schema)
        add_write_routes(app, schema)
    add_association_routes(app)
    app.add_routes(account.routes)
    app.add_routes(admin.routes)
    app.cleanup_ctx.append(_deliveries)
    return app


async def _deliveries(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[HUBSPOT_SIM_KEY].close()
