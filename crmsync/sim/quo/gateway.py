"""The gateway in front of the API: faults, auth, rate limit, error mapping and counting.

Two surfaces share it, the per-key rate limit and the faults: `/v1/...` with v1's
error bodies, and the unprefixed 2026-03-30 routes (`/webhooks...`), which first
require `Quo-Api-Version: 2026-03-30` (400 before auth) and answer every error in the
2026 envelope (`wire_v2`). Order per request, as a Kong-fronted API would see it:

1. drop fault: the connection is aborted before anything is answered (not counted
   by the rate limiter: the request never reached the gateway);
2. latency fault (and spikes): inbound network delay, so ranged latency also reorders
   arrivals;
3. auth: the raw key in `Authorization` (no `Bearer`), 401 otherwise; keys still
   activating are 401 too. Kong authenticates before it rate-limits;
4. forced 429 burst, then the per-key sliding window: 429 `API rate limit exceeded`;
5. injected 5xx, then the route handler; `BadRequestError` becomes Quo's 400 body;
6. drop-after fault: the handler has applied the request (a contact exists), then the
   connection is aborted before the answer is written.

Every API answer is counted by (method, route template, status), a request dropped
after it was applied included (it was answered; the answer was lost). `/_sim` admin
routes skip all of this.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from crmsync.sim._kit.http import abort, route_template
from crmsync.sim.quo import wire_v2
from crmsync.sim.quo.state import QUO_SIM_KEY, QuoSim
from crmsync.sim.quo.wire import (
    RATE_LIMIT_BODY,
    BadRequestError,
    bad_request_response,
    error_response,
    json_response,
    not_found,
    server_error,
    unauthorized,
)

API_PREFIX = "/v1/"
ADMIN_PREFIX = "/_sim/"
UNMATCHED_ROUTE = "<unmatched>"


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def rate_limited(retry_after: float | None, *, versioned: bool = False) -> web.Response:
    headers = None if retry_after is None else {"Retry-After": _seconds(retry_after)}
    if versioned:
        return wire_v2.rate_limited(headers)
    return json_response(RATE_LIMIT_BODY, 429, headers)


async def _admit_and_handle(
    sim: QuoSim, request: web.Request, handler: Handler, template: str, *, versioned: bool
) -> tuple[web.StreamResponse, bool]:
    """The answer, and whether the route handler ran (the request was applied)."""
    if versioned and not wire_v2.has_version(request):
        return wire_v2.version_error(), False
    key = request.headers.get("Authorization")
    if key is None or not sim.key_is_active(key):
        return (wire_v2.unauthorized() if versioned else unauthorized()), False
    if sim.faults.take_forced_429(time.monotonic()):
        sim.gate.arrive(key, force_reject=True)
        return rate_limited(sim.faults.force_429_retry_after, versioned=versioned), False
    if not sim.gate.arrive(key):
        retry_after = 1.0 if sim.config.retry_after_header else None
        return rate_limited(retry_after, versioned=versioned), False
    failure = sim.faults.take_failure(request.method, request.path, template)
    if failure is not None:
        return (wire_v2.server_error(failure) if versioned else server_error(failure)), False
    if versioned:
        return await _handle_versioned(request, handler), True
    try:
        return await handler(request), True
    except BadRequestError as exc:
        return bad_request_response(exc), True
    except web.HTTPMethodNotAllowed:
        return error_response(405, "0800405", "Method Not Allowed"), True
    except web.HTTPNotFound:
        return not_found(), True


async def _handle_versioned(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except wire_v2.ApiError as exc:
        return exc.response()
    except web.HTTPMethodNotAllowed:
        return wire_v2.ApiError(405, "Method Not Allowed").response()
    except web.HTTPNotFound:
        return wire_v2.ApiError(404, "Not Found").response()



@web.middleware
async def gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the pipeline described in the module docstring."""
    if request.path.startswith(ADMIN_PREFIX):
        return await handler(request)
    versioned = not request.path.startswith(API_PREFIX)
    sim = request.app[QUO_SIM_KEY]
    template = route_template(request, UNMATCHED_ROUTE)
    if sim.faults.take_drop(request.method, request.path, template):
        return abort(request)
    delay = sim.faults.delay(sim.rng, request.method, request.path, template)
    if delay > 0:
        await asyncio.sleep(delay)
    response, applied = await _admit_and_handle(
        sim, request, handler, template, versioned=versioned
    )
    sim.stats.record(request.method, template, response.status)
    if applied and sim.faults.take_drop_after(request.method, request.path, template):
        return abort(request)
    return response
