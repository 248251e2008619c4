"""`/_sim/` admin routes for tests that run the simulator in another process.

No authentication and no rate limit. Routes:

* `GET /_sim/stats`: request counters, 429s, record/note/webhook counts, deliveries.
* `POST /_sim/people` {first_name?, last_name?, full_name?, emails?, phones?,
  job_title?, company_id?, notify?} → 201 {"record_id"}.
* `PATCH /_sim/people/{id}` {changes..., notify?} → {"record_id", "changed": [attrs]}.
* `DELETE /_sim/people/{id}` {notify?} (query `?notify=false`) → {}.
* `GET|POST /_sim/faults` → the current fault settings; POST takes `FaultUpdate`
  (`faults.py`: counted and rate-based 500s, 429s with or without Retry-After,
  dropped connections before and after applying, latency spikes, short and repeated
  pages, revoked keys; `drop_webhooks`, `webhook_mode` for deliveries).
* `POST /_sim/webhooks/deliver` → waits for queued deliveries; `POST
  /_sim/webhooks/redeliver-last` → {"status"} of the duplicate delivery; `POST
  /_sim/webhooks/redeliver-failed` → {"statuses"} of every unacknowledged message
  sent once more.
* `POST /_sim/webhooks/{id}/expire` → {} (status `inactive`: no more deliveries);
  `DELETE /_sim/webhooks/{id}` → {} (the webhook is gone).
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from crmsync.sim._kit.admin import add_crm_fault_routes, only, read_change
from crmsync.sim.attio.errors import json_response
from crmsync.sim.attio.faults import FaultUpdate
from crmsync.sim.attio.people import CHANGEABLE
from crmsync.sim.attio.state import ATTIO_SIM_KEY

routes = web.RouteTableDef()
add_crm_fault_routes(routes, ATTIO_SIM_KEY, FaultUpdate, lambda sim: (sim.faults, sim.deliverer))


@routes.get("/_sim/stats")
async def stats(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    return json_response({
        "requests": dict(sim.stats.requests),
        "rate_limited": sim.stats.rate_limited,
        "injected_failures": sim.stats.injected_failures,
        "people": len(sim.people),
        "companies": len(sim.companies),
        "notes": len(sim.notes),
        "webhooks": len(sim.webhooks),
        "deliveries": [asdict(a) for a in sim.deliverer.attempts],
        "dropped_deliveries": len(sim.deliverer.dropped),
        "faults": sim.faults.settings(sim.deliverer),
    })


@routes.post("/_sim/people")
async def add_person(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    body, notify = await read_change(request)
    only(body, CHANGEABLE)
    try:
        record_id = sim.add_person(notify=notify, **body)
    except KeyError as exc:
        raise web.HTTPBadRequest(reason=f"unknown company: {exc}") from None
    return json_response({"record_id": record_id}, status=201)


@routes.patch("/_sim/people/{record_id}")
async def update_person(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    record_id = request.match_info["record_id"]
    body, notify = await read_change(request)
    only(body, CHANGEABLE)
    if record_id not in sim.people:
        raise web.HTTPNotFound(reason="no such person")
    try:
        changed = sim.update_person(record_id, notify=notify, **body)
    except KeyError as exc:
        raise web.HTTPBadRequest(reason=f"unknown company: {exc}") from None
    return json_response({"record_id": record_id, "changed": changed})


@routes.delete("/_sim/people/{record_id}")
async def delete_person(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    record_id = request.match_info["record_id"]
    if record_id not in sim.people:
        raise web.HTTPNotFound(reason="no such person")
    notify = request.query.get("notify", "true").lower() != "false"
    sim.delete_person(record_id, notify=notify)
    return json_response({})


@routes.post("/_sim/webhooks/deliver")
async def deliver(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    await sim.deliver_pending()
    return json_response({"attempts": len(sim.deliverer.attempts)})


@routes.post("/_sim/webhooks/redeliver-last")
async def redeliver_last(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    return json_response({"status": await sim.redeliver_last()})


@routes.post("/_sim/webhooks/redeliver-failed")
async def redeliver_failed(request: web.Request) -> web.Response:
    attempts = await request.app[ATTIO_SIM_KEY].redeliver_failed()
    return json_response({"statuses": [a.status for a in attempts]})


@routes.post("/_sim/webhooks/{webhook_id}/expire")
async def expire_webhook(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    webhook_id = request.match_info["webhook_id"]
    if webhook_id not in sim.webhooks:
        raise web.HTTPNotFound(reason="no such webhook")
    sim.expire_webhook(webhook_id)
    return json_response({})


@routes.delete("/_sim/webhooks/{webhook_id}")
async def remove_webhook(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    webhook_id = request.match_info["webhook_id"]
    if webhook_id not in sim.webhooks:
        raise web.HTTPNotFound(reason="no such webhook")
    sim.remove_webhook(webhook_id)
    return json_response({})
