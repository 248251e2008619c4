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
from typing import Any

import msgspec
from aiohttp import web

from crmsync.sim.hubspot.errors import JSONObject, json_response
from crmsync.sim.hubspot.faults import FaultUpdate
from crmsync.sim.hubspot.state import HUBSPOT_SIM_KEY, EmailConflictError, HubSpotSim

routes = web.RouteTableDef()


@routes.get("/_sim/stats")
async def stats(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    return json_response({
        "requests": sim.stats.by_route(),
        "total_requests": sim.stats.total_requests,
        "rate_limited": sim.stats.rate_limited,
        "injected_failures": sim.stats.injected_failures,
        "max_in_any_window": sim.stats.max_in_any_window,
        "max_search_in_any_second": sim.stats.max_search_in_any_second,
        "contacts": len(sim.record_ids()),
        "companies": len(sim.companies),
        "notes": len(sim.notes),
        "webhook_events": len(sim.hooks.events),
        "webhook_attempts": [asdict(a) for a in sim.hooks.attempts],
        "dropped_batches": len(sim.hooks.dropped),
        "faults": _faults(sim),
    })


@routes.post("/_sim/contacts")
async def add_contact(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    body = await _body(request)
    notify = bool(body.pop("notify", True))
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
    body = await _body(request)
    notify = bool(body.pop("notify", True))
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
    body = await _body(request)
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


@routes.get("/_sim/faults")
async def get_faults(request: web.Request) -> web.Response:
    return json_response(_faults(request.app[HUBSPOT_SIM_KEY]))


@routes.post("/_sim/faults")
async def set_faults(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    try:
        update = msgspec.json.decode(await request.read(), type=FaultUpdate)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise web.HTTPBadRequest(reason=str(exc).replace("\n", " ")) from None
    update.apply(sim.faults)
    if update.drop_webhooks is not None:
        sim.hooks.drop_next = update.drop_webhooks
    if update.webhook_mode is not None:
        sim.hooks.mode = "drop" if update.webhook_mode == "drop" else "send"
    return json_response(_faults(sim))


@routes.get("/_sim/webhooks")
async def get_webhooks(request: web.Request) -> web.Response:
    return json_response(_webhooks(request.app[HUBSPOT_SIM_KEY]))


@routes.put("/_sim/webhooks")
async def put_webhooks(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    body = await _body(request)
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


def _faults(sim: HubSpotSim) -> JSONObject:
    return {**sim.faults.settings(), "drop_webhooks": sim.hooks.drop_next,
            "webhook_mode": sim.hooks.mode}


def _known(sim: HubSpotSim, request: web.Request) -> str:
    record_id = request.match_info["record_id"]
    if not record_id.isdigit() or sim.contacts.live(int(record_id)) is None:
        raise web.HTTPNotFound(reason="no such live contact")
    return record_id


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(reason="body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return body
