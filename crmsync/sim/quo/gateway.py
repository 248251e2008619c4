"""The gateway in front of `/v1`: faults, auth, rate limit, error mapping and counting.

Order per request, as a Kong-fronted API would see it:

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

Every `/v1` answer is counted by (method, route template, status), a request dropped
after it was applied included (it was answered; the answer was lost). `/_sim` admin
routes skip all of this.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from aiohttp.typedefs import Handler

from crmsync.sim._kit.http import route_template
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
UNMATCHED_ROUTE = "<unmatched>"


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def rate_limited(retry_after: float | None) -> web.Response:
    headers = None if retry_after is None else {"Retry-After": _seconds(retry_after)}
    return json_response(RATE_LIMIT_BODY, 429, headers)


async def _admit_and_handle(
    sim: QuoSim, request: web.Request, handler: Handler, template: str
) -> tuple[web.StreamResponse, bool]:
    """The answer, and whether the route handler ran (the request was applied)."""
    key = request.headers.get("Authorization")
    if key is None or not sim.key_is_active(key):
        return unauthorized(), False
    if sim.faults.take_forced_429(time.monotonic()):
        sim.gate.arrive(key, force_reject=True)
        return rate_limited(sim.faults.force_429_retry_after), False
    if not sim.gate.arrive(key):
        return rate_limited(1.0 if sim.config.retry_after_header else None), False
    failure = sim.faults.take_failure(request.method, request.path, template)
    if failure is not None:
        return server_error(failure), False
    try:
        return await handler(request), True
    except BadRequestError as exc:
        return bad_request_response(exc), True
    except web.HTTPMethodNotAllowed:
        return error_response(405, "0800405", "Method Not Allowed"), True
    except web.HTTPNotFound:
        return not_found(), True


def _abort(request: web.Request) -> web.Response:
    """Cut the connection; the response returned is never written."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)


@web.middleware
async def gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the `/v1` pipeline described in the module docstring."""
    if not request.path.startswith(API_PREFIX):
        return await handler(request)
    sim = request.app[QUO_SIM_KEY]
    template = route_template(request, UNMATCHED_ROUTE)
    if sim.faults.take_drop(request.method, request.path, template):
        return _abort(request)
    delay = sim.faults.delay(sim.rng, request.method, request.path, template)
    if delay > 0:
        await asyncio.sleep(delay)
    response, applied = await _admit_and_handle(sim, request, handler, template)
    sim.stats.record(request.method, template, response.status)
    if applied and sim.faults.take_drop_after(request.method, request.path, template):
        return _abort(request)
    return response
