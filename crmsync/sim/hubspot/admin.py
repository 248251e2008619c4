"""`/_sim/` admin routes: the HubSpot app's UI, for the demo and out-of-process tests.

No authentication and no rate limit. Routes:

* `GET /_sim/stats`: request counters, 429s, per-token maxima, object counts, webhooks.
* `POST /_sim/contacts` {property: value..., company_ids?, notify?} → 201 {"id"}.
* `PATCH /_sim/contacts/{id}` {property: value..., notify?} → {"id", "changed"} (an
  edit "in the HubSpot app": `contact.propertyChange` webhooks follow).
* `DELETE /_sim/contacts/{id}` (`?notify=false`) → {}; `POST /_sim/contacts/{id}/restore`.
* `POST /_sim/contacts/merge` {"primary", "merged"} → {"id"}.
* `GET|POST /_sim/faults` → the fault settings; POST takes `FaultUpdate`.
* `GET|PUT /_sim/webhooks` {"targetUrl"} → the app's webhook settings;
  `POST /_sim/webhooks/drain` → waits for every batch → {"attempts"}.
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from crmsync.sim._kit.admin import add_crm_fault_routes, read_body, read_change
from crmsync.sim.hubspot.errors import JSONObject, json_response
from crmsync.sim.hubspot.faults import FaultUpdate
from crmsync.sim.hubspot.state import HUBSPOT_SIM_KEY, EmailConflictError, HubSpotSim

routes = web.RouteTableDef()
add_crm_fault_routes(routes, HUBSPOT_SIM_KEY, FaultUpdate, lambda sim: (sim.faults, sim.hooks))


@routes.get("/_sim/stats")
async def stats(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    return json_response({
        **sim.stats.summary(),
        "injected_failures": sim.stats.injected_failures,
        "max_in_any_window": sim.stats.max_in_any_window,
        "max_search_in_any_second": sim.stats.max_search_in_any_second,
        "contacts": len(sim.record_ids()),
        "companies": len(sim.companies),
        "notes": len(sim.notes),
        "webhook_events": len(sim.hooks.events),
        "webhook_attempts": [asdict(a) for a in sim.hooks.attempts],
        "dropped_batches": len(sim.hooks.dropped),
        "faults": sim.faults.settings(sim.hooks),
    })


@routes.post("/_sim/contacts")
async def add_contact(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    body, notify = await read_change(request)
    companies = body.pop("company_ids", [])
    try:
        record_id = sim.add_contact(notify=notify, company_ids=companies, **body)
    except (KeyError, ValueError, EmailConflictError) as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None
    return json_response({"id": record_id}, status=201)


@routes.patch("/_sim/contacts/{record_id}")
async def update_contact(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    record_id = _known(sim, request)
    body, notify = await read_change(request)
    try:
        changed = sim.update_contact(record_id, notify=notify, **body)
    except (KeyError, ValueError, EmailConflictError) as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None
    return json_response({"id": record_id, "changed": changed})


@routes.delete("/_sim/contacts/{record_id}")
async def delete_contact(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    notify = request.query.get("notify", "true").lower() != "false"
    sim.delete_contact(_known(sim, request), notify=notify)
    return json_response({})


@routes.post("/_sim/contacts/merge")
async def merge_contacts(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    body = await read_body(request)
    try:
        kept = sim.merge_contacts(str(body["primary"]), str(body["merged"]))
    except (KeyError, ValueError) as exc:
        raise web.HTTPBadRequest(reason=f"cannot merge: {exc}") from None
    return json_response({"id": kept})


@routes.post("/_sim/contacts/{record_id}/restore")
async def restore_contact(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    record_id = request.match_info["record_id"]
    try:
        sim.restore_contact(record_id)
    except (KeyError, ValueError, EmailConflictError) as exc:
        raise web.HTTPBadRequest(reason=f"cannot restore: {exc}") from None
    return json_response({"id": record_id})


@routes.get("/_sim/webhooks")
async def get_webhooks(request: web.Request) -> web.Response:
    return json_response(_webhooks(request.app[HUBSPOT_SIM_KEY]))


@routes.put("/_sim/webhooks")
async def put_webhooks(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    body = await read_body(request)
    url = body.get("targetUrl")
    if url is not None and not (isinstance(url, str) and url.startswith(("http://",
                                                                           "https://"))):
        raise web.HTTPBadRequest(reason="targetUrl must be an http(s) URL or null")
    sim.point_webhooks(url)
    return json_response(_webhooks(sim))


@routes.post("/_sim/webhooks/drain")
async def drain(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    await sim.hooks.drain()
    return json_response({"attempts": len(sim.hooks.attempts)})


def _webhooks(sim: HubSpotSim) -> JSONObject:
    hooks = sim.hooks
    return {"targetUrl": hooks.target_url, "appId": hooks.app_id,
            "subscribedProperties": list(hooks.subscribed), "events": len(hooks.events)}


def _known(sim: HubSpotSim, request: web.Request) -> str:
    record_id = request.match_info["record_id"]
    if not record_id.isdigit() or sim.contacts.live(int(record_id)) is None:
        raise web.HTTPNotFound(reason="no such live contact")
    return record_id
