"""v4 associations: batch read, default association PUT, DELETE, one object's listing.

Registered for the pairs a sync needs (contacts <-> companies, contacts <-> notes)
under literal paths, so the request counters name them. A contact's primary company
carries type 1 ("Primary") and 279; any other company 279; a contact's notes 202's
inverse, 201. Batch-read inputs without any association come back as errors (207),
as HubSpot reports them.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from crmsync.sim.hubspot import links
from crmsync.sim.hubspot.errors import (
    JSONObject,
    batch_inputs,
    int_param,
    json_response,
    not_found,
    object_id,
    read_json_object,
)
from crmsync.sim.hubspot.model import CrmObject
from crmsync.sim.hubspot.state import HUBSPOT_SIM_KEY, HubSpotSim

PAIRS = (("contacts", "companies"), ("companies", "contacts"), ("contacts", "notes"),
         ("notes", "contacts"))
MAX_LISTING = 500


def add_association_routes(app: web.Application) -> None:
    for pair in PAIRS:
        source, target = pair
        app.router.add_post(f"/crm/v4/associations/{source}/{target}/batch/read",
                            _batch_read(pair))
        one = f"/crm/v4/objects/{source}/{{object_id:[0-9]+}}/associations"
        app.router.add_get(f"{one}/{target}", _listing(pair))
        app.router.add_put(f"{one}/default/{target}/{{to_id:[0-9]+}}", _put_default(pair))
        app.router.add_delete(f"{one}/{target}/{{to_id:[0-9]+}}", _delete(pair))


def _items(sim: HubSpotSim, obj: CrmObject, pair: tuple[str, str]) -> list[JSONObject]:
    _, target = pair
    items = []
    for other in links.ordered(obj, target):
        found = sim.stores[target].get(other)
        if found is None or found.archived:
            continue
        primary = links.is_primary(obj, target, other) or (
            pair == ("companies", "contacts") and found.primary_company == obj.id)
        items.append({"toObjectId": other, "associationTypes": links.v4_types(pair, primary)})
    return items


def _batch_read(pair: tuple[str, str]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = request.app[HUBSPOT_SIM_KEY]
        source, target = pair
        results: list[JSONObject] = []
        errors: list[JSONObject] = []
        for wanted in batch_inputs(await read_json_object(request), maximum=1000):
            obj = sim.stores[source].live(wanted)
            items = [] if obj is None else _items(sim, obj, pair)
            if items:
                results.append({"from": {"id": str(wanted)}, "to": items})
            else:
                errors.append({
                    "status": "error", "category": "OBJECT_NOT_FOUND",
                    "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                    "message": f"No {target[:-1]} is associated with {source[:-1]} {wanted}.",
                    "context": {"fromObjectId": [str(wanted)]},
                })
        body: JSONObject = {"status": "COMPLETE", "results": results}
        if not errors:
            return json_response(body)
        body.update(numErrors=len(errors), errors=errors)
        return json_response(body, status=207)
    return handler


def _listing(pair: tuple[str, str]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = request.app[HUBSPOT_SIM_KEY]
        limit = int_param(request.query.get("limit"), "limit", default=MAX_LISTING,
                          minimum=1, maximum=MAX_LISTING)
        offset = int_param(request.query.get("after"), "after", default=0, minimum=0,
                           maximum=10**9)
        obj = sim.stores[pair[0]].live(object_id(request.match_info["object_id"]))
        items = [] if obj is None else _items(sim, obj, pair)
        body: JSONObject = {"results": items[offset:offset + limit]}
        if offset + limit < len(items):
            body["paging"] = {"next": {"after": str(offset + limit)}}
        return json_response(body)
    return handler


def _pair_objects(sim: HubSpotSim, request: web.Request,
                  pair: tuple[str, str]) -> tuple[CrmObject, CrmObject]:
    source, target = pair
    found = []
    for object_type, key in ((source, "object_id"), (target, "to_id")):
        raw = request.match_info[key]
        obj = sim.stores[object_type].live(object_id(raw))
        if obj is None:
            raise not_found(f"No {object_type[:-1]} with id {raw} exists.")
        found.append(obj)
    return found[0], found[1]


def _put_default(pair: tuple[str, str]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = request.app[HUBSPOT_SIM_KEY]
        a, b = _pair_objects(sim, request, pair)
        sim.associate(a, b)
        type_id = links.DEFAULTS[pair][0]
        return json_response({"status": "COMPLETE", "results": [{
            "from": {"id": str(a.id)}, "to": {"id": str(b.id)},
            "associationSpec": {"associationCategory": "HUBSPOT_DEFINED",
                                "associationTypeId": type_id},
        }]})
    return handler


def _delete(pair: tuple[str, str]) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = request.app[HUBSPOT_SIM_KEY]
        a, b = _pair_objects(sim, request, pair)
        sim.dissociate(a, b)
        return web.Response(status=204)
    return handler
