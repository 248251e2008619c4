"""v3 object reads: list with `after` paging, get one, batch read, search.

One set of handlers serves contacts, companies and notes; `add_read_routes` registers
them per object type under literal paths, so the request counters name
`/crm/v3/objects/contacts` rather than a template of every type. Reads return only
the asked properties (plus the create / modify dates and `hs_object_id`); unknown
property names are ignored, as HubSpot does. Archived objects are 404 unless
`archived=true` is asked; a contact merged away reads as the contact it became.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from crmsync.sim.hubspot import links
from crmsync.sim.hubspot.errors import (
    JSONObject,
    batch_inputs,
    int_param,
    json_response,
    not_found,
    object_id,
    only_fields,
    read_json_object,
    validation_error,
)
from crmsync.sim.hubspot.model import CrmObject, Schema
from crmsync.sim.hubspot.search import parse_search, read_properties
from crmsync.sim.hubspot.state import HUBSPOT_SIM_KEY, HubSpotSim

MAX_PAGE = 100
ALIASES = {"contact": "contacts", "company": "companies", "note": "notes"}
BATCH_READ_FIELDS = frozenset({"inputs", "properties", "propertiesWithHistory", "idProperty"})


def add_read_routes(app: web.Application, schema: Schema) -> None:
    base = f"/crm/v3/objects/{schema.object_type}"
    app.router.add_get(base, _list(schema))
    app.router.add_post(f"{base}/batch/read", _batch_read(schema))
    app.router.add_post(f"{base}/search", _search(schema))
    app.router.add_get(base + "/{object_id:[0-9]+}", _get_one(schema))


def query_properties(request: web.Request) -> list[str] | None:
    """`properties=a,b` (or repeated `properties=`); None when absent."""
    raw = request.query.getall("properties", [])
    if not raw:
        return None
    return [p.strip() for value in raw for p in value.split(",") if p.strip()]


def query_associations(request: web.Request, schema: Schema) -> list[str]:
    raw = request.query.getall("associations", [])
    wanted = [ALIASES.get(a.strip(), a.strip()) for v in raw for a in v.split(",") if a.strip()]
    for to_type in wanted:
        if (schema.object_type, to_type) not in links.DEFAULTS:
            raise validation_error(f"Unknown association type {to_type!r} for "
                                   f"{schema.label}.")
    return wanted


def archived_param(request: web.Request) -> bool:
    raw = request.query.get("archived", "false").lower()
    if raw not in ("true", "false"):
        raise validation_error(f"archived must be true or false, got {raw!r}.")
    return raw == "true"


def rendered(sim: HubSpotSim, obj: CrmObject, properties: list[str] | None,
             associations: list[str]) -> JSONObject:
    body = obj.render(properties)
    shown: JSONObject = {}
    for to_type in associations:
        items = links.v3_associations(obj, to_type, _primary_of(sim))
        if items:
            shown[to_type] = {"results": items}
    if shown:
        body["associations"] = shown
    return body


def _primary_of(sim: HubSpotSim) -> Callable[[int], int | None]:
    def primary(contact_id: int) -> int | None:
        contact = sim.contacts.get(contact_id)
        return None if contact is None else contact.primary_company
    return primary


def _list(schema: Schema) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = request.app[HUBSPOT_SIM_KEY]
        limit = int_param(request.query.get("limit"), "limit", default=10, minimum=1,
                          maximum=MAX_PAGE)
        after = request.query.get("after")
        first = 0 if after is None else object_id(after, "after")
        archived = archived_param(request)
        properties = query_properties(request)
        associations = query_associations(request, schema)
        page: list[CrmObject] = []
        more = None
        for obj in sim.stores[schema.object_type].from_id(first):
            if obj.archived != archived:
                continue
            if len(page) == limit:
                more = obj
                break
            page.append(obj)
        body: JSONObject = {"results": [rendered(sim, o, properties, associations)
                                        for o in page]}
        if more is not None:
            cursor = str(page[-1].id + 1)
            link = URL(str(request.url)).update_query(after=cursor)
            body["paging"] = {"next": {"after": cursor, "link": str(link)}}
        return json_response(body)
    return handler


def _get_one(schema: Schema) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = request.app[HUBSPOT_SIM_KEY]
        raw = request.match_info["object_id"]
        store = sim.stores[schema.object_type]
        if request.query.get("idProperty", "hs_object_id") != "hs_object_id":
            raise validation_error("The simulator reads objects by hs_object_id only.")
        wanted = object_id(raw)
        if archived_param(request):
            obj = store.get(wanted)
            obj = obj if obj is not None and obj.archived else None
        else:
            obj = sim.resolve(store, wanted)
        if obj is None:
            raise not_found(f"Object not found.  objectId are usually numeric. ({raw})")
        return json_response(rendered(sim, obj, query_properties(request),
                                      query_associations(request, schema)))
    return handler


def _batch_read(schema: Schema) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = request.app[HUBSPOT_SIM_KEY]
        body = await read_json_object(request)
        only_fields(body, BATCH_READ_FIELDS, "in batch read")
        if body.get("idProperty", "hs_object_id") != "hs_object_id":
            raise validation_error("The simulator reads batches by hs_object_id only.")
        started = _now()
        properties = read_properties(body.get("properties"))
        store = sim.stores[schema.object_type]
        found: dict[int, CrmObject] = {}
        missing: list[str] = []
        for wanted in batch_inputs(body):
            obj = sim.resolve(store, wanted)
            if obj is None:
                missing.append(str(wanted))
            else:
                found.setdefault(obj.id, obj)
        answer: JSONObject = {
            "status": "COMPLETE",
            "results": [o.render(properties) for o in found.values()],
            "startedAt": started, "completedAt": _now(),
        }
        if not missing:
            return json_response(answer)
        answer["numErrors"] = 1
        answer["errors"] = [{
            "status": "error", "category": "OBJECT_NOT_FOUND",
            "message": f"Could not get some {schema.label} objects, they may be deleted or "
                       "not exist. Check that ids are valid.",
            "context": {"ids": missing},
        }]
        return json_response(answer, status=207)
    return handler


def _search(schema: Schema) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = request.app[HUBSPOT_SIM_KEY]
        query = parse_search(schema, await read_json_object(request))
        total, page = sim.search[schema.object_type].run(query)
        body: JSONObject = {"total": total,
                            "results": [o.render(query.properties) for o in page]}
        shown = query.offset + len(page)
        if shown < total:
            body["paging"] = {"next": {"after": str(shown)}}
        return json_response(body)
    return handler


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
