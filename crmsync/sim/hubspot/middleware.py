"""The policing every API request passes: counting, auth, injected faults, rate limits.

Order (the shared `_kit.gateway.police`): dropped connection (nothing answered, not
counted) → latency → authenticate (401; revoked tokens too) → injected faults (500,
forced 429) → daily, search and 10-second limits (429) → handler → dropped connection
after the handler applied the request (counted: it was answered, the answer was lost).
Non-search answers to a known token carry the `X-HubSpot-RateLimit-*` headers, 429s
included. Errors raised anywhere below become HubSpot's JSON error shape, aiohttp's
own 404 / 405 too. `/_sim/` admin routes skip all of it.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from crmsync.sim._kit.gateway import ErrorShape, bearer_token, police
from crmsync.sim._kit.http import route_template
from crmsync.sim.hubspot.errors import HubSpotError, rate_limited, unauthorized
from crmsync.sim.hubspot.state import HUBSPOT_SIM_KEY, HubSpotSim

logger = logging.getLogger(__name__)
UNMATCHED_ROUTE = "unmatched"  # the counter key of requests no route matched


@web.middleware
async def hubspot_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/_sim/"):
        return await handler(request)
    sim = request.app[HUBSPOT_SIM_KEY]
    search = request.method == "POST" and request.path.endswith("/search")
    token: str | None = None  # once authenticated: its answers carry its limits

    def admit() -> None:
        nonlocal token
        token = _authenticate(request, sim)
        _admit(sim, token, search=search)

    def finish(response: web.StreamResponse) -> None:
        if token is not None and not search and isinstance(response, web.Response):
            response.headers.update(sim.limiter.headers(token))
        sim.stats.record(request.method, route_template(request, UNMATCHED_ROUTE),
                         response.status)

    return await police(request, handler, sim.faults, ERRORS, admit=admit, finish=finish)


def _admit(sim: HubSpotSim, token: str, *, search: bool) -> None:
    if sim.faults.take_failure():
        sim.stats.injected_failures += 1
        raise HubSpotError(500, "INTERNAL_ERROR",
                           "internal error (injected by the simulator)")
    if sim.faults.take_forced_429():
        sim.stats.injected_failures += 1
        sim.limiter.admit(token, search=search, force_reject=True)
        raise rate_limited("TEN_SECONDLY_ROLLING")
    policy = sim.limiter.admit(token, search=search)
    if policy is not None:
        raise rate_limited(policy)


def _authenticate(request: web.Request, sim: HubSpotSim) -> str:
    token = bearer_token(request)
    if token is None or token not in sim.config.api_keys or token in sim.faults.revoked_keys:
        raise unauthorized()
    return token


def _from_http_exception(exc: web.HTTPException) -> HubSpotError:
    if exc.status == 404:
        return HubSpotError(404, "OBJECT_NOT_FOUND", "Resource not found.")
    if exc.status == 405:
        return HubSpotError(405, "VALIDATION_ERROR", "Method not allowed on this resource.",
                            headers={"Allow": exc.headers.get("Allow", "")})
    if exc.status == 413:
        return HubSpotError(413, "VALIDATION_ERROR", "Request body too large.")
    return HubSpotError(exc.status, "VALIDATION_ERROR", exc.reason)


ERRORS = ErrorShape(
    "HubSpot", _from_http_exception,
    lambda: HubSpotError(500, "INTERNAL_ERROR", "The simulator crashed; see its log."),
    logger,
)
