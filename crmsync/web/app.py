"""The daemon's HTTP listener (INTERFACE §4): health, metrics, status and webhook intake.

    app = build_app(targets=..., store=store, config=lambda: config, health=health,
                    max_body_bytes=config.http.max_body_bytes)
    async with serve(app, "127.0.0.1", 0) as port: ...

A webhook is answered 2xx only after its inbox row is committed, and the handler never
calls the CRM or Quo: the order is size cap → signature (401) → parse (400) → insert
(committed, shielded) → 200 → `target.notify()`. Everything else happens in the tenant's
inbox processor. Every error is a short JSON `{"error": ...}`; a bug in a handler is a
500 for that request only, never the end of the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from typing import Any, Final, Literal, TypeVar

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from crmsync import metrics
from crmsync.adapters.base import WebhookFormatError, WebhookSignatureError
from crmsync.config import Config
from crmsync.domain.status import build_status, encode_status
from crmsync.store import Source, Store
from crmsync.web.health import Health
from crmsync.web.targets import WebhookTarget

log = logging.getLogger(__name__)

T = TypeVar("T")
Outcome = Literal[
    "accepted", "duplicate", "bad_signature", "malformed", "too_large", "unknown_tenant", "error"
]

#: the metric's tenant label for ids no target answers to (bounded label values)
UNKNOWN_TENANT_LABEL: Final = "_unknown"
#: how long a cancelled handler still waits for its inbox commit to finish
COMMIT_GRACE_SECONDS: Final = 5.0
#: never stored: credentials a proxy or sender might add (signatures are kept)
SENSITIVE_HEADERS: Final = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
    "x-auth-token", "x-amz-security-token",
})

TargetLookup = Callable[[str], WebhookTarget | None]
ConfigGetter = Callable[[], Config]

TARGETS_KEY: Final[web.AppKey[TargetLookup]] = web.AppKey("crmsync_targets")
STORE_KEY: Final = web.AppKey("crmsync_store", Store)
CONFIG_KEY: Final[web.AppKey[ConfigGetter]] = web.AppKey("crmsync_config")
HEALTH_KEY: Final = web.AppKey("crmsync_health", Health)
MAX_BODY_KEY: Final = web.AppKey("crmsync_max_body_bytes", int)
PENDING_COMMITS_KEY: Final = web.AppKey("crmsync_pending_commits", set[asyncio.Task[Any]])


def build_app(
    *,
    targets: TargetLookup,
    store: Store,
    config: ConfigGetter,
    health: Health,
    max_body_bytes: int,
) -> web.Application:
    """The listener's application; `targets(tenant_id)` is None for unknown or stopped ones."""
    # client_max_size caps request.read()/post() too, should anything ever call them.
    app = web.Application(middlewares=[_errors_as_json], client_max_size=max_body_bytes)
    app[TARGETS_KEY] = targets
    app[STORE_KEY] = store
    app[CONFIG_KEY] = config
    app[HEALTH_KEY] = health
    app[MAX_BODY_KEY] = max_body_bytes
    app[PENDING_COMMITS_KEY] = set()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/status", status)
    app.router.add_post("/webhooks/{tenant}/crm", crm_webhook)
    app.router.add_post("/webhooks/{tenant}/quo", quo_webhook)
    return app


@contextlib.asynccontextmanager
async def serve(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 5.0
) -> AsyncIterator[int]:
    """Listen on `host:port` (0: a free port) and yield the bound port; clean up on exit.

    Signals stay with the daemon (`handle_signals=False`): it decides when to stop.
    """
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


# -- plumbing ---------------------------------------------------------------------------


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Router errors (404, 405) as JSON; any handler bug as a 500 for this request only."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except Exception:
        log.exception("bug in the HTTP handler of %s %s", request.method, request.path)
        return _error(500, "internal error")


# -- health, metrics, status ------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    if request.app[HEALTH_KEY].alive():
        return _json({"status": "ok"})
    return _json({"status": "not alive"}, 503)


async def readyz(request: web.Request) -> web.Response:
    health = request.app[HEALTH_KEY]
    if health.ready():
        return _json({"status": "ready"})
    return _json({"status": "not ready", "reasons": health.not_ready_reasons()}, 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    # CONTENT_TYPE_LATEST carries a charset, which aiohttp's content_type= refuses.
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def status(request: web.Request) -> web.Response:
    """The JSON of `crmsync status --json` (built from the state database: no secrets)."""
    report = await build_status(request.app[CONFIG_KEY](), request.app[STORE_KEY])
    return web.Response(body=encode_status(report), content_type="application/json")


# -- webhooks ---------------------------------------------------------------------------


async def crm_webhook(request: web.Request) -> web.Response:
    return await _intake(request, "crm")


async def quo_webhook(request: web.Request) -> web.Response:
    return await _intake(request, "quo")


async def _intake(request: web.Request, source: Source) -> web.Response:
    target = request.app[TARGETS_KEY](request.match_info["tenant"])
    if target is None:
        _count(UNKNOWN_TENANT_LABEL, source, "unknown_tenant")
        return _error(404, "unknown tenant")
    tenant = target.tenant
    limit = request.app[MAX_BODY_KEY]
    body = await _read_capped(request, limit)
    if body is None:
        _count(tenant, source, "too_large")
        return _error(413, f"body larger than {limit} bytes")
    headers = request.headers
    try:
        if source == "crm":
            await target.verify_crm(headers, body)
        else:
            await target.verify_quo(headers, body)
    except WebhookSignatureError as exc:
        log.debug("tenant %s: %s webhook rejected: %s", tenant, source, exc)
        _count(tenant, source, "bad_signature")
        return _error(401, "bad or missing signature")
    try:
        if source == "crm":
            event = target.parse_crm(headers, body)
            event_id, event_type = event.event_id, event.event_type
        else:
            event_id, event_type = target.parse_quo(body)
    except WebhookFormatError as exc:
        _count(tenant, source, "malformed")
        return _error(400, f"malformed webhook: {exc}")
    try:
        row = await _committed(
            request.app,
            request.app[STORE_KEY].inbox.insert(
                tenant, source, event_id, event_type, body, _storable(headers)
            ),
        )
    except Exception:
        _count(tenant, source, "error")
        raise  # the middleware answers 500: the sender retries later
    if row is None:
        _count(tenant, source, "duplicate")
        return _json({"status": "duplicate"})
    _count(tenant, source, "accepted")
    target.notify()
    return _json({"status": "accepted"})


def _count(tenant: str, source: Source, outcome: Outcome) -> None:
    metrics.webhook_events.labels(tenant=tenant, source=source, outcome=outcome).inc()


async def _read_capped(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is over `limit` bytes (never buffers more than limit+1)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    body = bytearray()
    while True:
        chunk = await request.content.read(limit + 1 - len(body))
        if not chunk:
            return bytes(body)
        body += chunk
        if len(body) > limit:
            return None


def _storable(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers worth keeping with the event: signatures and ids yes, credentials no."""
    return {name: value for name, value in headers.items()
            if name.lower() not in SENSITIVE_HEADERS}


async def _committed(app: web.Application, commit: Coroutine[Any, Any, T]) -> T:
    """Await a durable write that a cancelled request must not abandon halfway.

    Shielded, but bounded: if the handler is cancelled (shutdown), the write still gets
    `COMMIT_GRACE_SECONDS` to finish before the cancellation goes on. The sender was not
    answered, so it retries; the inbox's unique key makes that retry a duplicate.
    """
    task = asyncio.ensure_future(commit)
    pending = app[PENDING_COMMITS_KEY]  # a strong reference while it runs
    pending.add(task)
    task.add_done_callback(pending.discard)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task}, timeout=COMMIT_GRACE_SECONDS)
        raise
