"""The policing every /v2 request passes: counting, auth, injected faults, rate limits.

Order (the shared `_kit.gateway.police`): dropped connection (nothing answered, not
counted) → latency → authenticate (401; revoked keys too) → injected faults (500,
forced 429) → rate limit (429) → handler → dropped connection after the handler applied
the request (counted: it was answered, the answer was lost). Errors raised anywhere
below become Attio's JSON error shape, including aiohttp's own 404 / 405 for unknown
routes and methods. `/_sim/` admin routes skip all of it. The faults are `faults.py`'s.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from crmsync.sim._kit.gateway import ErrorShape, bearer_token, police
from crmsync.sim._kit.http import route_template
from crmsync.sim.attio.errors import AttioError
from crmsync.sim.attio.ratelimit import next_second_date, request_kind
from crmsync.sim.attio.state import ATTIO_SIM_KEY, AttioSim

logger = logging.getLogger(__name__)
RATE_LIMITED_MESSAGE = "Rate limit exceeded, please try again later"
UNMATCHED_ROUTE = "unmatched"  # the counter key of requests no route matched


@web.middleware
async def attio_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/v2/"):
        return await handler(request)
    sim = request.app[ATTIO_SIM_KEY]

    def finish(response: web.StreamResponse) -> None:
        sim.stats.count(request.method, route_template(request, UNMATCHED_ROUTE),
                        response.status)

    return await police(request, handler, sim.faults, ERRORS,
                        admit=lambda: _admit(request, sim), finish=finish)


def _admit(request: web.Request, sim: AttioSim) -> None:
    api_key = _authenticate(request, sim)
    if sim.faults.take_failure():
        sim.stats.injected_failures += 1
        raise AttioError(500, "internal_server_error", "internal_error",
                         "An unexpected error occurred (injected by the simulator).")
    if sim.faults.take_forced_429():
        sim.stats.injected_failures += 1
        raise _rate_limited(
            next_second_date(sim.limiter.wall_clock()) if sim.faults.retry_after else None
        )
    retry_after = sim.limiter.check(api_key, request_kind(request.method, request.path))
    if retry_after is not None:
        raise _rate_limited(retry_after)


def _authenticate(request: web.Request, sim: AttioSim) -> str:
    token = bearer_token(request)
    if token is None or token not in sim.config.api_keys or token in sim.faults.revoked_keys:
        raise AttioError(401, "auth_error", "unauthorized",
                         "Authentication failed: missing or invalid bearer token.")
    return token


def _rate_limited(retry_after: str | None) -> AttioError:
    headers = None if retry_after is None else {"Retry-After": retry_after}
    return AttioError(429, "rate_limit_error", "rate_limit_exceeded", RATE_LIMITED_MESSAGE,
                      headers=headers)


def _from_http_exception(exc: web.HTTPException) -> AttioError:
    if exc.status == 404:
        return AttioError(404, "invalid_request_error", "not_found", "Route not found.")
    if exc.status == 405:
        return AttioError(405, "invalid_request_error", "method_not_allowed",
                          "Method not allowed on this route.",
                          headers={"Allow": exc.headers.get("Allow", "")})
    if exc.status == 413:
        return AttioError(413, "invalid_request_error", "payload_too_large", exc.reason)
    return AttioError(exc.status, "invalid_request_error", "http_error", exc.reason)


ERRORS = ErrorShape(
    "Attio", _from_http_exception,
    lambda: AttioError(500, "internal_server_error", "internal_error",
                       "The simulator crashed; see its log."),
    logger,
)
