"""The daemon's HTTP listener (INTERFACE §4): health, metrics, status, webhook intake
and the management API.

    app = build_app(targets=..., store=store, config=lambda: config, health=health,
                    max_body_bytes=config.http.max_body_bytes)
    async with serve(app, "127.0.0.1", 0) as port: ...

Webhooks are `intake.py`'s, `/api/…` is `api.py`'s (off unless `http.admin_token` is
set; `managed(tenant_id)` finds a running tenant for it). Every error is a short JSON
`{"error": ...}`; a bug in a handler is a 500 for that request only, never the end of
the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from crmsync.domain.status import build_status, encode_status
from crmsync.net.serve import serve_app
from crmsync.store import Store
from crmsync.web.api import ROUTES, ApiRoute, add_api_routes
from crmsync.web.guard import IntakeGuard
from crmsync.web.health import Health
from crmsync.web.intake import crm_webhook, quo_webhook
from crmsync.web.keys import (
    CONFIG_KEY,
    GUARD_KEY,
    HEALTH_KEY,
    MANAGED_KEY,
    MAX_BODY_KEY,
    PENDING_COMMITS_KEY,
    STORE_KEY,
    TARGETS_KEY,
    ConfigGetter,
    ManagedLookup,
    TargetLookup,
    error_response,
    json_response,
)

log = logging.getLogger(__name__)


def build_app(
    *,
    targets: TargetLookup,
    store: Store,
    config: ConfigGetter,
    health: Health,
    max_body_bytes: int,
    guard: IntakeGuard | None = None,
    managed: ManagedLookup | None = None,
    api_routes: Sequence[ApiRoute] = ROUTES,
) -> web.Application:
    """The listener's application; `targets(tenant_id)` is None for unknown or stopped ones.

    `managed(tenant_id)` is the management API's lookup (default: no tenant is found);
    `api_routes` its route table.

    `guard` throttles senders of bad signatures (default: `IntakeGuard()`'s limits).
    """
    # client_max_size caps request.read()/post() too, should anything ever call them.
    app = web.Application(middlewares=[_errors_as_json], client_max_size=max_body_bytes)
    app[TARGETS_KEY] = targets
    app[MANAGED_KEY] = managed if managed is not None else _no_tenant
    app[STORE_KEY] = store
    app[CONFIG_KEY] = config
    app[HEALTH_KEY] = health
    app[MAX_BODY_KEY] = max_body_bytes
    app[PENDING_COMMITS_KEY] = set()
    app[GUARD_KEY] = IntakeGuard() if guard is None else guard
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/status", status)
    app.router.add_post("/webhooks/{tenant}/crm", crm_webhook)
    app.router.add_post("/webhooks/{tenant}/quo", quo_webhook)
    add_api_routes(app, api_routes)
    return app


def _no_tenant(tenant_id: str) -> None:
    return None


@contextlib.asynccontextmanager
async def serve(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5.0
) -> AsyncIterator[int]:
    """Listen on `host:port` (0: a free port) and yield the bound port; clean up on exit.

    Signals stay with the daemon (`handle_signals=False`): it decides when to stop.
    """
    async with serve_app(app, host, port, shutdown_timeout=shutdown_timeout) as (_, bound):
        yield bound


# -- plumbing ---------------------------------------------------------------------------


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Router errors (404, 405) as JSON; any handler bug as a 500 for this request only."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)
    except Exception:
        log.exception("bug in the HTTP handler of %s %s", request.method, request.path)
        return error_response(500, "internal error")


# -- health, metrics, status ------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    if request.app[HEALTH_KEY].alive():
        return json_response({"status": "ok"})
    return json_response({"status": "not alive"}, 503)


async def readyz(request: web.Request) -> web.Response:
    health = request.app[HEALTH_KEY]
    if health.ready():
        return json_response({"status": "ready"})
    return json_response({"status": "not ready", "reasons": health.not_ready_reasons()}, 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    # In a thread: 200 tenants' series take ~180 ms to render, which on the loop would
    # hold every limiter grant and webhook at each scrape (the registry is thread-safe).
    body = await asyncio.to_thread(generate_latest)
    # CONTENT_TYPE_LATEST carries a charset, which aiohttp's content_type= refuses.
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def status(request: web.Request) -> web.Response:
    """The JSON of `crmsync status --json` (built from the state database: no secrets)."""
    report = await build_status(request.app[CONFIG_KEY](), request.app[STORE_KEY])
    return web.Response(body=encode_status(report), content_type="application/json")
