"""The policing every API request (`/api/v2/...`, `/v1/...`) passes.

Order (the shared `_kit.gateway.police`): dropped connection (nothing answered, not
counted) → latency → authenticate (`x-api-token`; 401, revoked keys too) → daily budget
(429 without any rate-limit header) → injected 500 → burst windows (a forced 429 is a
burst 429 with headers, or without them when the fault says so) → the token cost is
charged → handler → every answer of an admitted request carries the window's
`x-ratelimit-*` headers → dropped connection after the handler applied the request.
Errors anywhere below become Pipedrive's JSON error body, aiohttp's own 404 / 405 for
unknown routes included. `/_sim/` admin routes skip all of it.
"""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from crmsync.sim._kit.gateway import ErrorShape, police
from crmsync.sim._kit.http import route_template
from crmsync.sim.pipedrive.errors import PipedriveError, unauthorized
from crmsync.sim.pipedrive.limits import is_search, token_cost
from crmsync.sim.pipedrive.state import PIPEDRIVE_SIM_KEY, PipedriveSim

logger = logging.getLogger(__name__)
API_PREFIXES = ("/api/v2/", "/v1/")
UNMATCHED_ROUTE = "unmatched"
OVER_LIMIT = "Request over limit"
BUDGET_INFO = "The company's daily API token budget is spent; it resets at midnight."


@web.middleware
async def pipedrive_gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(API_PREFIXES):
        return await handler(request)
    sim = request.app[PIPEDRIVE_SIM_KEY]
    route = route_template(request, UNMATCHED_ROUTE)
    window_headers: dict[str, str] = {}  # set once admitted: every answer carries them

    def finish(response: web.StreamResponse) -> None:
        for name, value in window_headers.items():
            response.headers.setdefault(name, value)
        sim.stats.record(request.method, route, response.status)

    return await police(
        request, handler, sim.faults, ERRORS,
        admit=lambda: _admit(request, sim, route, window_headers), finish=finish,
    )


def _admit(
    request: web.Request, sim: PipedriveSim, route: str, window_headers: dict[str, str],
) -> None:
    token = request.headers.get("x-api-token", "")
    if token not in sim.config.api_keys or token in sim.faults.revoked_keys:
        raise unauthorized()
    search = is_search(route)
    sim.limiter.observe(token, search=search)
    if sim.budget.exhausted:
        sim.stats.budget_refused += 1
        raise PipedriveError(429, OVER_LIMIT, info=BUDGET_INFO)
    if sim.faults.take_failure():
        sim.stats.injected_failures += 1
        raise PipedriveError(500, "Internal server error (injected by the simulator)")
    forced = sim.faults.take_forced_429()
    verdict = sim.limiter.admit(token, search=search, force_reject=forced)
    if forced:
        sim.stats.injected_failures += 1
        if not sim.faults.rate_limit_headers:
            raise PipedriveError(429, OVER_LIMIT)
    if not verdict.admitted:
        raise PipedriveError(429, OVER_LIMIT, headers=verdict.headers)
    window_headers.update(verdict.headers)
    sim.budget.charge(token_cost(request.method, route))


def _from_http_exception(exc: web.HTTPException) -> PipedriveError:
    if exc.status == 404:
        return PipedriveError(404, "Unknown method .")
    if exc.status == 405:
        return PipedriveError(405, "Method not allowed",
                              headers={"Allow": exc.headers.get("Allow", "")})
    if exc.status == 413:
        return PipedriveError(413, "Request body too large")
    return PipedriveError(exc.status, exc.reason)


ERRORS = ErrorShape(
    "Pipedrive", _from_http_exception,
    lambda: PipedriveError(500, "The simulator crashed; see its log."),
    logger,
)
