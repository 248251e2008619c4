"""v3 object writes: create (with associations), PATCH, DELETE (archive), contact merge.

Strict like HubSpot: only known, writable properties (`properties.py`); a contact's
email must not belong to another live contact (409 CONFLICT "Existing ID: N"); a note
needs `hs_timestamp` and at most 65,536 characters of `hs_note_body`; associations in a
create name HubSpot-defined type ids that fit the two object types (a note reaches a
contact with 202), and their targets must exist.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from crmsync.sim.hubspot import links
from crmsync.sim.hubspot.errors import (
    HubSpotError,
    json_response,
    not_found,
    object_id,
    only_fields,
    read_json_object,
    validation_error,
)
from crmsync.sim.hubspot.model import CONTACTS, NOTES, CrmObject, Schema
from crmsync.sim.hubspot.objects import rendered
from crmsync.sim.hubspot.properties import clean_properties
from crmsync.sim.hubspot.state import HUBSPOT_SIM_KEY, EmailConflictError, HubSpotSim

MAX_NOTE_BODY = 65_536
CREATE_FIELDS = frozenset({"properties", "associations"})

def add_write_routes(app: web.Application, schema: Schema) -> None:
    base = f"/crm/v3/objects/{schema.object_type}"
    app.router.add_post(base, _create(schema))
    app.router.add_patch(base + "/{object_id:[0-9]+}", _patch(schema))
    app.router.add_delete(base + "/{object_id:[0-9]+}", _delete(schema))
    if schema is CONTACTS:
        app.router.add_post(f"{base}/merge", _merge)

def conflict(exc: EmailConflictError) -> HubSpotError:
    return HubSpotError(409, "CONFLICT", str(exc))

def _create(schema: Schema) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = request.app[HUBSPOT_SIM_KEY]
        body = await read_json_object(request)
        only_fields(body, CREATE_FIELDS, "in create")
        values, created = clean_properties(schema, body.get("properties", {}), creating=True)
        targets = _associations(sim, schema, body.get("associations", []))
        if schema is NOTES:
            _check_note(values)
        try:
            obj = sim.create(schema, values, created_ms=created, source=sim.api_source)
        except EmailConflictError as exc:
            raise conflict(exc) from None
        for target, primary in targets:
            sim.associate(obj, target, primary=primary)
        return json_response(rendered(sim, obj, list(obj.properties), []), status=201)
    return handler

def _patch(schema: Schema) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = request.app[HUBSPOT_SIM_KEY]
        obj = _live(sim, schema, request.match_info["object_id"])
        body = await read_json_object(request)
        if set(body) != {"properties"}:
            raise validation_error('A PATCH body is {"properties": {...}}.')
        values, _ = clean_properties(schema, body["properties"], creating=False)
        if schema is NOTES:
            _check_note({**obj.properties, **values})
        try:
            sim.update(obj, values, source=sim.api_source)
        except EmailConflictError as exc:
            raise conflict(exc) from None
        return json_response(rendered(sim, obj, [*values, *obj.properties], []))
    return handler

def _delete(schema: Schema) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = request.app[HUBSPOT_SIM_KEY]
        obj = sim.stores[schema.object_type].get(object_id(request.match_info["object_id"]))
        if obj is None:
            raise not_found(f"{schema.label} {request.match_info['object_id']} not found.")
        if not obj.archived:  # deleting an archived object again is fine, and silent
            sim.archive(obj, source=sim.api_source)
        return web.Response(status=204)
    return handler

async def _merge(request: web.Request) -> web.Response:
    sim = request.app[HUBSPOT_SIM_KEY]
    body = await read_json_object(request)
    if set(body) != {"primaryObjectId", "objectIdToMerge"}:
        raise validation_error('A merge is {"primaryObjectId", "objectIdToMerge"}.')
    primary = _live(sim, CONTACTS, body["primaryObjectId"])
    merged = _live(sim, CONTACTS, body["objectIdToMerge"])
    if primary is merged:
        raise validation_error("Cannot merge a contact with itself.")
    sim.merge(primary, merged, source=sim.api_source)
    return json_response(rendered(sim, primary, list(primary.properties), []))

def _live(sim: HubSpotSim, schema: Schema, raw: object) -> CrmObject:
    obj = sim.stores[schema.object_type].live(object_id(raw))
    if obj is None:
        raise not_found(f"resource not found: {schema.label} {raw} does not exist.")
    return obj

def _check_note(values: dict[str, str | None]) -> None:
    if not values.get("hs_timestamp"):
        raise validation_error('Property values were not valid: "hs_timestamp" is required.',
                               errors=[{"message": "hs_timestamp is required",
                                        "code": "REQUIRED_PROPERTY",
                                        "context": {"propertyName": ["hs_timestamp"]}}])
    length = len(values.get("hs_note_body") or "")
    if length > MAX_NOTE_BODY:
        raise validation_error(f"hs_note_body is {length} characters; the maximum is "
                               f"{MAX_NOTE_BODY}.")

def _associations(sim: HubSpotSim, schema: Schema,
                  raw: object) -> list[tuple[CrmObject, bool]]:
    """`associations` of a create: `(target, primary?)`, validated before anything is written."""
    if not isinstance(raw, list):
        raise validation_error("associations must be a list.")
    targets: list[tuple[CrmObject, bool]] = []
    for item in raw:
        to = item.get("to") if isinstance(item, dict) else None
        types = item.get("types") if isinstance(item, dict) else None
        if not isinstance(to, dict) or not isinstance(types, list) or not types:
            raise validation_error('Each association is {"to": {"id"}, "types": [...]}.')
        target_types: set[str] = set()
        primary = False
        for spec in types:
            target_types.add(_target_type(schema, spec))
            primary = primary or spec.get("associationTypeId") in (1, 2)
        if len(target_types) != 1:
            raise validation_error("The types of one association must name one object type.")
        target = sim.stores[target_types.pop()].live(object_id(to.get("id"), "to.id"))
        if target is None:
            raise validation_error(f"One or more associations are invalid: {to.get('id')} "
                                   "does not exist.")
        targets.append((target, primary))
    return targets

def _target_type(schema: Schema, spec: object) -> str:
    if not isinstance(spec, dict) or spec.get("associationCategory") != "HUBSPOT_DEFINED":
        raise validation_error('associationCategory must be "HUBSPOT_DEFINED" (no labels '
                               "are defined in the simulated portal).")
    type_id = spec.get("associationTypeId")
    to_type = links.TYPE_IDS.get((schema.object_type, type_id)) if isinstance(
        type_id, int) else None
    if to_type is None:
        raise validation_error(f"associationTypeId {type_id!r} is not valid from "
                               f"{schema.label}.")
    return to_type
