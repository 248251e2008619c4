"""`create_pipedrive_app(config)`: the aiohttp application of one simulated company.

The `PipedriveSim` state is reachable as `app[PIPEDRIVE_SIM_KEY]`. Its webhook deliverer
(background delivery tasks and the one outgoing `ClientSession`) is torn down in a
cleanup context, so closing the app never leaves a session or task behind. Search
routes are added before `/persons/{id}`, which would otherwise match `/persons/search`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from crmsync.sim.pipedrive import admin, notes, orgs, persons, search, webhooks
from crmsync.sim.pipedrive.config import PipedriveSimConfig
from crmsync.sim.pipedrive.gateway import pipedrive_gateway
from crmsync.sim.pipedrive.state import PIPEDRIVE_SIM_KEY, PipedriveSim

MAX_BODY_BYTES = 4 * 1024 * 1024


def create_pipedrive_app(config: PipedriveSimConfig | None = None) -> web.Application:
    sim = PipedriveSim(config or PipedriveSimConfig())
    app = web.Application(middlewares=[pipedrive_gateway], client_max_size=MAX_BODY_BYTES)
    app[PIPEDRIVE_SIM_KEY] = sim
    for table in (search.routes, persons.routes, orgs.routes, notes.routes,
                  webhooks.routes, admin.routes):
        app.add_routes(table)
    app.cleanup_ctx.append(_deliveries)
    return app


async def _deliveries(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[PIPEDRIVE_SIM_KEY].close()
