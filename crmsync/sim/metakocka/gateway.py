"""What every API call passes before and after its endpoint runs.

Order per request:

1. drop fault: the connection is aborted before anything happens (not counted);
2. latency fault (and spikes);
3. no such endpoint (the `json/` family, a typo): an HTML 404 page; a method other
   than POST: an HTML 405 page. Nothing below runs;
4. the body must be a JSON object (`opr_code 2` otherwise);
5. auth in the body: `company_id` + `secret_key`, `opr_code 3` when they do not open
   a company; the company's IP restriction, `opr_code 4`;
6. forced rate-limit fault, then the company's call window: `opr_code 5` "Quote
   exceeds" (HTTP 200, like every application error);
7. injected failure: an HTML 5xx page (Metakocka being upgraded), nothing applied;
8. the endpoint; an `MkError` becomes `{"opr_code", "opr_desc"}`;
9. drop-after fault: the endpoint applied the call (a partner exists), then the
   connection is aborted before the answer.

Every answered call is counted by endpoint, claimed company and outcome (`stats.py`).
`/_sim/` admin routes skip all of this.
"""

from __future__ import annotations

import asyncio
import logging
import time

import msgspec
from aiohttp import web
from aiohttp.typedefs import Handler

from crmsync.sim._kit.http import abort, route_template
from crmsync.sim.metakocka import wire
from crmsync.sim.metakocka.state import (
    BODY_KEY,
    COMPANY_KEY,
    METAKOCKA_SIM_KEY,
    STARTED_KEY,
    MetakockaSim,
)
from crmsync.sim.metakocka.stats import NO_COMPANY
from crmsync.sim.metakocka.wire import INVALID_CREDENTIALS, QUOTE_EXCEEDS, MkError

logger = logging.getLogger(__name__)
ADMIN_PREFIX = "/_sim/"


class HtmlError(Exception):
    """An answer as an HTML page with this status (an injected server failure)."""

    def __init__(self, status: int, title: str) -> None:
        super().__init__(title)
        self.status = status
        self.title = title


UNMATCHED = "<unmatched>"


@web.middleware
async def gateway(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith(ADMIN_PREFIX):
        return await handler(request)
    sim = request.app[METAKOCKA_SIM_KEY]
    request[STARTED_KEY] = time.monotonic()
    template = route_template(request, UNMATCHED)
    if sim.faults.take_drop(request.method, request.path, template):
        return abort(request)
    delay = sim.faults.delay(sim.latency_rng, request.method, request.path, template)
    if delay > 0:
        await asyncio.sleep(delay)
    endpoint = UNMATCHED if template == UNMATCHED else template.rsplit("/", 1)[-1]
    outcome = _Outcome()
    try:
        response = await _handle(sim, request, handler, template, outcome)
        code = "0"
    except MkError as exc:
        response, code = exc.response(), exc.opr_code
    except HtmlError as exc:
        response, code = wire.html_page(exc.status, exc.title), f"http {exc.status}"
    except web.HTTPException as exc:  # aiohttp's own: no route, wrong method, body too big
        response, code = wire.html_page(exc.status, exc.reason), f"http {exc.status}"
    except Exception:  # a simulator bug: answer as Metakocka would, and say so loudly
        logger.exception("Metakocka simulator failed on %s %s", request.method, request.path)
        response, code = MkError(wire.INTERNAL, "Internal error").response(), wire.INTERNAL
    sim.stats.record(endpoint, outcome.company_id, code)
    if outcome.applied and sim.faults.take_drop_after(request.method, request.path, template):
        return abort(request)
    return response


class _Outcome:
    """What the gateway learnt about a call before it failed or finished."""

    __slots__ = ("applied", "company_id")

    def __init__(self) -> None:
        self.company_id = NO_COMPANY
        self.applied = False


async def _handle(
    sim: MetakockaSim, request: web.Request, handler: Handler, template: str,
    outcome: _Outcome,
) -> web.StreamResponse:
    http_error = request.match_info.http_exception
    if http_error is not None:
        raise http_error
    body = await _body(request)
    outcome.company_id = _claimed(body.get("company_id"))
    _admit(sim, request, body, outcome.company_id)
    failure = sim.faults.take_failure(request.method, request.path, template)
    if failure is not None:
        raise HtmlError(failure, "Service Unavailable")
    outcome.applied = True
    return await handler(request)


async def _body(request: web.Request) -> wire.JSONObject:
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError:
        raise MkError(wire.PARAMETER, "Request is not valid JSON.") from None
    if not isinstance(body, dict):
        raise MkError(wire.PARAMETER, "Request must be a JSON object.")
    return body


def _claimed(company_id: object) -> str:
    """The company a body names (docs send a string; a JSON number is taken too)."""
    if isinstance(company_id, int) and not isinstance(company_id, bool):
        return str(company_id)
    return company_id if isinstance(company_id, str) and company_id else NO_COMPANY


def _admit(
    sim: MetakockaSim, request: web.Request, body: wire.JSONObject, company_id: str
) -> None:
    company = sim.authenticate(company_id, body.get("secret_key"))
    if company is None:
        raise MkError(wire.AUTH, INVALID_CREDENTIALS)
    allowed = company.config.allowed_ips
    if allowed is not None and request.remote not in allowed:
        raise MkError(wire.IP_NOT_ALLOWED, f"IP address '{request.remote}' is not allowed "
                                           f"for company_id = {company.company_id}")
    now = time.monotonic()
    if sim.faults.take_forced_429(now):
        raise MkError(wire.QUOTE, QUOTE_EXCEEDS)
    if not company.window.arrive(now):
        raise MkError(wire.QUOTE, QUOTE_EXCEEDS)
    request[BODY_KEY] = body
    request[COMPANY_KEY] = company
