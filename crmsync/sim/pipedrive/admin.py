"""`/_sim/` admin routes: changes "in the Pipedrive app", faults, budget, counters.

No authentication and no rate limit. Routes:

* `GET /_sim/stats`: request counters by route, 429s, max requests in any window per
  token, budget used, data counts, webhook delivery attempts; `POST /_sim/stats/reset`.
* `POST /_sim/persons` {name?, first_name?, last_name?, emails?, phones?, job_title?,
  org_id?, notify?} → 201 {"id"} (lists may hold plain strings).
* `PATCH /_sim/persons/{id}` {fields..., notify?} → {"id", "changed": [fields]}.
* `DELETE /_sim/persons/{id}` (`?notify=false`) → {}.
* `POST /_sim/persons/{id}/merge` {"into": survivor id} → {} (delete + change webhooks).
* `GET|POST /_sim/faults` → the settings; POST takes `faults.FaultUpdate`.
* `POST /_sim/budget` {"daily_tokens"?: N} → a new day (used 0), optionally resized.
* `POST /_sim/webhooks/deliver` → waits for queued deliveries and their retries.
* `POST /_sim/webhooks/{id}/deactivate` → {} (`is_active` 0: nothing delivered to it).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import msgspec
from aiohttp import web

from crmsync.sim._kit.admin import add_crm_fault_routes, read_body, read_change
from crmsync.sim._kit.http import json_response
from crmsync.sim.pipedrive.faults import FaultUpdate
from crmsync.sim.pipedrive.state import PIPEDRIVE_SIM_KEY, PipedriveSim


def _fail(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    """An admin error with a JSON body `{"error": message}` (tests decode every answer)."""
    return kind(text=msgspec.json.encode({"error": message}).decode(),
                content_type="application/json")


def _bad_request(message: str) -> web.HTTPException:
    return _fail(web.HTTPBadRequest, message)


routes = web.RouteTableDef()
add_crm_fault_routes(routes, PIPEDRIVE_SIM_KEY, FaultUpdate, lambda sim: (sim.faults, sim.hooks),
                     fail=_bad_request)


@routes.get("/_sim/stats")
async def stats(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    return json_response({
        **sim.stats.summary(),
        "budget_refused": sim.stats.budget_refused,
        "injected_failures": sim.stats.injected_failures,
        "max_in_any_window": sim.stats.max_in_any_window,
        "max_search_in_any_window": sim.stats.max_search_in_any_window,
        "budget": {"total": sim.budget.total, "used": sim.budget.used},
        "persons": len(sim.record_ids()),
        "organizations": len(sim.orgs),
        "notes": len(sim.notes),
        "webhooks": len(sim.webhooks),
        "deliveries": [asdict(a) for a in sim.hooks.attempts],
        "dropped_deliveries": len(sim.hooks.dropped),
    })


@routes.post("/_sim/stats/reset")
async def reset_stats(request: web.Request) -> web.Response:
    request.app[PIPEDRIVE_SIM_KEY].reset_stats()
    return json_response({})


@routes.post("/_sim/persons")
async def add_person(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    body, notify = await read_change(request, _bad_request)
    try:
        changes = sim.app_fields(body, creating=True)
    except ValueError as exc:
        raise _fail(web.HTTPBadRequest, str(exc)) from None
    person = sim.create(changes, source="app", notify=notify)
    return json_response({"id": str(person.id)}, status=201)


@routes.patch("/_sim/persons/{id}")
async def update_person(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    person_id = _live_id(sim, request)
    body, notify = await read_change(request, _bad_request)
    try:
        changed = sim.update_person(person_id, notify=notify, **body)
    except ValueError as exc:
        raise _fail(web.HTTPBadRequest, str(exc)) from None
    return json_response({"id": person_id, "changed": changed})


@routes.delete("/_sim/persons/{id}")
async def delete_person(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    person_id = _live_id(sim, request)
    sim.delete_person(person_id, notify=request.query.get("notify", "true") != "false")
    return json_response({})


@routes.post("/_sim/persons/{id}/merge")
async def merge_person(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    loser = _live_id(sim, request)
    into = str((await _body(request)).get("into", ""))
    if not into.isdigit() or sim.persons.live(int(into)) is None or into == loser:
        raise _fail(web.HTTPBadRequest, "into: another live person's id")
    sim.merge_persons(loser, into)
    return json_response({})


@routes.post("/_sim/budget")
async def reset_budget(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    total = (await _body(request)).get("daily_tokens")
    if total is not None and (not isinstance(total, int) or total < 0):
        raise _fail(web.HTTPBadRequest, "daily_tokens: a non-negative integer")
    sim.reset_budget(total)
    return json_response({"total": sim.budget.total, "used": sim.budget.used})


@routes.post("/_sim/webhooks/deliver")
async def deliver(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    await sim.deliver_pending()
    return json_response({"attempts": len(sim.hooks.attempts)})


@routes.post("/_sim/webhooks/{id}/deactivate")
async def deactivate(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    raw = request.match_info["id"]
    if not raw.isdigit() or int(raw) not in sim.webhooks:
        raise _fail(web.HTTPNotFound, "no such webhook")
    sim.webhooks[int(raw)].is_active = False
    return json_response({})


def _live_id(sim: PipedriveSim, request: web.Request) -> str:
    raw = request.match_info["id"]
    if not raw.isdigit() or sim.persons.live(int(raw)) is None:
        raise _fail(web.HTTPNotFound, "no such person")
    return raw


async def _body(request: web.Request) -> dict[str, Any]:
    return await read_body(request, _bad_request)
