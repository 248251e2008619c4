"""`create_attio_app(config)`: the aiohttp application of one simulated workspace.

The `AttioSim` state is reachable as `app[ATTIO_SIM_KEY]`. Its webhook deliverer (the
background delivery tasks and the one outgoing `ClientSession`) is set up and torn down
together in a cleanup context, so closing the app never leaves a session or task behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from crmsync.sim.attio import admin, notes, records, webhooks
from crmsync.sim.attio.config import AttioSimConfig
from crmsync.sim.attio.middleware import attio_middleware
from crmsync.sim.attio.state import ATTIO_SIM_KEY, AttioSim

# Attio's notes can be long transcripts; anything beyond this is surely a client bug.
MAX_BODY_BYTES = 4 * 1024 * 1024


def create_attio_app(config: AttioSimConfig | None = None) -> web.Application:
    sim = AttioSim(config or AttioSimConfig())
    app = web.Application(middlewares=[attio_middleware], client_max_size=MAX_BODY_BYTES)
    app[ATTIO_SIM_KEY] = sim
    for table in (records.routes, notes.routes, webhooks.routes, admin.routes):
        app.add_routes(table)
    app.cleanup_ctx.append(_deliveries)
    return app


async def _deliveries(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[ATTIO_SIM_KEY].close()
