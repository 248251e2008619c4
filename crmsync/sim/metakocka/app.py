"""`create_metakocka_app(config)`: the aiohttp application of one simulator.

The `MetakockaSim` state is reachable as `app[METAKOCKA_SIM_KEY]`; the gateway
middleware (`gateway.py`) polices every API call.
"""

from __future__ import annotations

from aiohttp import web

from crmsync.sim.metakocka.admin import routes as admin_routes
from crmsync.sim.metakocka.config import MetakockaSimConfig
from crmsync.sim.metakocka.gateway import gateway
from crmsync.sim.metakocka.partners import routes as partner_routes
from crmsync.sim.metakocka.search import routes as search_routes
from crmsync.sim.metakocka.state import METAKOCKA_SIM_KEY, MetakockaSim

MAX_BODY_BYTES = 1024 * 1024


def create_metakocka_app(config: MetakockaSimConfig | None = None) -> web.Application:
    app = web.Application(middlewares=[gateway], client_max_size=MAX_BODY_BYTES)
    app[METAKOCKA_SIM_KEY] = MetakockaSim(config or MetakockaSimConfig())
    for table in (partner_routes, search_routes, admin_routes):
        app.add_routes(table)
    return app
