"""The policing every /v2 request passes: counting, auth, injected faults, rate limits.

Order: authenticate (401) → injected faults (500 / 429) → rate limit (429) → handler.
Errors raised anywhere below become Attio's JSON error shape, including aiohttp's own
404 / 405 for unknown routes and methods. `/_sim/` admin routes skip all of it.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

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
    try:
        response = await _policed(request, handler, sim)
    except AttioError as exc:
        response = exc.response()
    except web.HTTPException as exc:
        response = _from_http_exception(exc).response()
    except Exception:  # a simulator bug: still answer in Attio's shape, and say so loudly
        logger.exception("Attio simulator failed on %s %s", request.method, request.path)
        response = AttioError(500, "internal_server_error", "internal_error",
                              "The simulator crashed; see its log.").response()
    sim.stats.count(request.method, route_template(request, UNMATCHED_ROUTE), response.status)
    return response


async def _policed(request: web.Request, handler: Handler, sim: AttioSim) -> web.StreamResponse:
    api_key = _authenticate(request, sim)
    if sim.faults.fail_next > 0:
        sim.faults.fail_next -= 1
        sim.stats.injected_failures += 1
        raise AttioError(500, "internal_server_error", "internal_error",
                         "An unexpected error occurred (injected by the simulator).")
    if sim.faults.rate_limit_next > 0:
        sim.faults.rate_limit_next -= 1
        sim.stats.injected_failures += 1
        raise _rate_limited(next_second_date(sim.limiter.wall_clock()))
    retry_after = sim.limiter.check(api_key, request_kind(request.method, request.path))
    if retry_after is not None:
        raise _rate_limited(retry_after)
    return await handler(request)


def _authenticate(request: web.Request, sim: AttioSim) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or token.strip() not in sim.config.api_keys:
        raise AttioError(401, "auth_error", "unauthorized",
                         "Authentication failed: missing or invalid bearer token.")
    return token.strip()


def _rate_limited(retry_after: str) -> AttioError:
    return AttioError(429, "rate_limit_error", "rate_limit_exceeded", RATE_LIMITED_MESSAGE,
                      headers={"Retry-After": retry_after})


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
