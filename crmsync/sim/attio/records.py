"""Record routes: objects, `records/query` (offset paging), get one record, `/v2/self`,
and writes: create (`POST .../records`), update (`PATCH` adds to multiselect values,
`PUT` replaces them), validated strictly by `writes.py`; each fires Attio's webhook.

`records/query` answers only `{"data": [...]}`: no cursor and no total, so a client
knows the end only by a short (or empty) page. The default order (creation time, then record id) is
stable, so offset paging over an unchanged workspace never skips or repeats a record,
unless the short- or repeated-page faults say otherwise (`faults.py`; unfiltered
listings only).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crmsync.sim.attio.errors import (
    json_response,
    not_found,
    read_json_object,
    record_not_found,
    validation_error,
)
from crmsync.sim.attio.model import (
    ATTRIBUTE_TYPES,
    OBJECT_NOUNS,
    StoredRecord,
    format_timestamp,
)
from crmsync.sim.attio.query import compile_filter, sort_records
from crmsync.sim.attio.state import ATTIO_SIM_KEY
from crmsync.sim.attio.store import INDEXED_FIELDS, RecordStore
from crmsync.sim.attio.writes import parse_values, write_values

DEFAULT_LIMIT = 500
QUERY_KEYS = frozenset({"filter", "sorts", "limit", "offset"})

routes = web.RouteTableDef()


def object_slug(request: web.Request) -> str:
    """The `{object}` path segment (slug or id) as a slug; 404 for unknown objects."""
    sim = request.app[ATTIO_SIM_KEY]
    given = request.match_info["object"]
    slug = sim.workspace.object_slug(given)
    if slug is None:
        raise not_found(f'Object with slug/ID "{given}" not found.')
    return slug


@routes.get("/v2/self")
async def identify(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    ws = sim.workspace
    return json_response({
        "active": True, "scope": "record_permission:read object_configuration:read "
        "note:read-write webhook:read-write", "client_id": sim.api_token_id,
        "token_type": "Bearer", "exp": None, "iat": int(ws.created_at.timestamp()),
        "sub": ws.workspace_id, "aud": sim.api_token_id, "iss": "attio.com",
        "authorized_by_workspace_member_id": ws.member_id, "workspace_id": ws.workspace_id,
        "workspace_name": ws.name, "workspace_slug": ws.slug, "workspace_logo_url": None,
    })


@routes.get("/v2/objects/{object}")
async def get_object(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    slug = object_slug(request)
    singular, plural = OBJECT_NOUNS[slug]
    return json_response({"data": {
        "id": {"workspace_id": sim.workspace.workspace_id,
               "object_id": sim.workspace.object_id(slug)},
        "api_slug": slug, "singular_noun": singular, "plural_noun": plural,
        "created_at": format_timestamp(sim.workspace.created_at),
    }})


@routes.post("/v2/objects/{object}/records/query")
async def query_records(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    slug = object_slug(request)
    body = await read_json_object(request)
    unknown = set(body) - QUERY_KEYS
    if unknown:
        raise validation_error(f"Unknown body fields: {', '.join(sorted(unknown))}.")
    limit = _count(body, "limit", DEFAULT_LIMIT, minimum=1)
    offset = _count(body, "offset", 0, minimum=0)
    records = _filtered(sim.store(slug), body.get("filter"), slug)
    if body.get("sorts") is not None:
        records = sort_records(records, body["sorts"], slug)
    if body.get("filter") is None:  # a listing being paged through
        start, end = sim.faults.page_window(offset, limit, len(records))
    else:
        start, end = offset, offset + limit
    return json_response({"data": [sim.render(r) for r in records[start:end]]})


@routes.get("/v2/objects/{object}/records/{record_id}")
async def get_record(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    slug = object_slug(request)
    record_id = request.match_info["record_id"]
    record = sim.store(slug).get(record_id)
    if record is None:
        raise record_not_found(record_id)
    return json_response({"data": sim.render(record)})


@routes.post("/v2/objects/{object}/records")
async def create_record(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    slug = object_slug(request)
    values = _parsed_values(request, slug, await read_json_object(request), record_id=None)
    record = sim.write_record(slug, None, values)
    return json_response({"data": sim.render(record)})


@routes.patch("/v2/objects/{object}/records/{record_id}")
async def patch_record(request: web.Request) -> web.Response:
    return await _update(request, add_to_lists=True)


@routes.put("/v2/objects/{object}/records/{record_id}")
async def put_record(request: web.Request) -> web.Response:
    return await _update(request, add_to_lists=False)


async def _update(request: web.Request, *, add_to_lists: bool) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    slug = object_slug(request)
    record_id = request.match_info["record_id"]
    body = await read_json_object(request)
    if record_id not in sim.store(slug):
        raise record_not_found(record_id)
    values = _parsed_values(request, slug, body, record_id=record_id)
    record = sim.write_record(slug, record_id, values, add_to_lists=add_to_lists)
    return json_response({"data": sim.render(record)})


def _parsed_values(
    request: web.Request, slug: str, body: dict[str, Any], *, record_id: str | None
) -> dict[str, list[dict[str, Any]]]:
    sim = request.app[ATTIO_SIM_KEY]
    ws = sim.workspace
    slug_of = {ws.attribute_id(slug, attribute): attribute for attribute in ATTRIBUTE_TYPES[slug]}
    stores = {name: sim.store(name) for name in ATTRIBUTE_TYPES}
    return parse_values(stores, slug, write_values(body), record_id=record_id, slug_of=slug_of)


def _count(body: dict[str, Any], name: str, default: int, *, minimum: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise validation_error(f'"{name}" must be an integer.')
    if value < minimum:
        raise validation_error(f'"{name}" must be at least {minimum}.')
    return int(value)


def _filtered(store: RecordStore, spec: Any, slug: str) -> list[StoredRecord]:
    """Matching records in default order; exact phone/email lookups use the index."""
    if spec is None or spec == {}:
        return store.ordered()
    predicate = compile_filter(spec, slug)  # validates the whole filter first
    indexed = _indexed_value(spec, slug)
    candidates = store.lookup(*indexed) if indexed else store.ordered()
    return [r for r in candidates if predicate(r)]


def _indexed_value(spec: dict[str, Any], slug: str) -> tuple[str, str] | None:
    """`(attribute, value)` when the filter is one exact phone/email match."""
    if slug != "people" or len(spec) != 1:
        return None
    ((attribute, value),) = spec.items()
    field = INDEXED_FIELDS.get(attribute)
    if field is None:
        return None
    if isinstance(value, str):
        return attribute, value
    if isinstance(value, dict) and len(value) == 1:
        inner = value.get(field, value.get("$eq"))
        if isinstance(inner, str):
            return attribute, inner
        if isinstance(inner, dict) and set(inner) == {"$eq"} and isinstance(inner["$eq"], str):
            return attribute, inner["$eq"]
    return None
