"""`/v1/contacts` routes: create, list, get, PATCH (replace), delete and bulk create.

Quirks kept on purpose: a duplicate `externalId` is an opaque 409; more than 20
repeated `externalIds` are a 400 (Quo's query parser turns longer arrays into
objects); a comma-joined list is one over-long id; `maxResults` is required and at
most 50; `totalItems` is wrong; bulk create answers 202 with an empty body and
reports nothing about what it dropped.

With `QuoSimConfig.api_writes_fire_contact_events` (the default), each write also fires
`contact.updated` / `contact.deleted` to the 2026-03-30 webhooks, in the background.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from crmsync.sim.quo.contact_store import ExternalIdConflictError
from crmsync.sim.quo.state import QUO_SIM_KEY
from crmsync.sim.quo.validation import validate_contact
from crmsync.sim.quo.wire import (
    DOCS_URL,
    BadRequestError,
    JsonObject,
    decode_page_token,
    encode_page_token,
    field_error,
    json_response,
    max_results,
    not_found,
    read_json,
)

routes = web.RouteTableDef()

MAX_QUERY_ARRAY = 20  # qs's default arrayLimit
MAX_QUERY_VALUE = 75
CONFLICT_BODY = {
    "message": "Failed to create contact",
    "code": "0800409",
    "status": 409,
    "docs": DOCS_URL,
    "title": "Conflict",
}
PAGE_KIND = "contacts"


def _query_array(request: web.Request, name: str) -> list[str]:
    """Repeated query keys (`name=a&name=b`, or `name[]=`), validated like Quo does."""
    values = [*request.query.getall(name, []), *request.query.getall(f"{name}[]", [])]
    if len(values) > MAX_QUERY_ARRAY:
        as_object = {str(i): v for i, v in enumerate(values)}
        raise BadRequestError([field_error(f"/{name}", "Expected array", as_object, "array")])
    errors = []
    for index, value in enumerate(values):
        if not value:
            message = "Expected string length greater or equal to 1"
        elif len(value) > MAX_QUERY_VALUE:
            message = f"Expected string length less or equal to {MAX_QUERY_VALUE}"
        else:
            continue
        errors.append(field_error(f"/{name}/{index}", message, value, "string"))
    if errors:
        raise BadRequestError(errors)
    return values


def _fire(request: web.Request, contact: JsonObject, *, deleted: bool = False) -> None:
    sim = request.app[QUO_SIM_KEY]
    if sim.config.api_writes_fire_contact_events:
        sim.contact_written(contact, deleted=deleted)


def _validated(request: web.Request, body: Any, *, partial: bool) -> JsonObject:
    sim = request.app[QUO_SIM_KEY]
    return validate_contact(body, partial=partial, custom_fields=sim.contacts.custom_field_names)


@routes.post("/v1/contacts")
async def create_contact(request: web.Request) -> web.Response:
    body = _validated(request, await read_json(request), partial=False)
    sim = request.app[QUO_SIM_KEY]
    try:
        contact = sim.contacts.create(body)
    except ExternalIdConflictError:
        return json_response(CONFLICT_BODY, 409)
    _fire(request, contact)
    return json_response({"data": contact}, 201)


@routes.get("/v1/contacts")
async def list_contacts(request: web.Request) -> web.Response:
    external_ids = _query_array(request, "externalIds")
    sources = _query_array(request, "sources")
    limit = max_results(request, 50)
    after = decode_page_token(request, PAGE_KIND)
    page, last, total = request.app[QUO_SIM_KEY].contacts.page(
        external_ids=external_ids, sources=sources, max_results=limit, after=after
    )
    token = None if last is None else encode_page_token(PAGE_KIND, last)
    return json_response({"data": page, "totalItems": total, "nextPageToken": token})


@routes.get("/v1/contacts/{id}")
async def get_contact(request: web.Request) -> web.Response:
    contact = request.app[QUO_SIM_KEY].contacts.contacts.get(request.match_info["id"])
    if contact is None:
        return not_found(message="Contact not found")
    return json_response({"data": contact})


@routes.patch("/v1/contacts/{id}")
async def update_contact(request: web.Request) -> web.Response:
    body = _validated(request, await read_json(request), partial=True)
    try:
        contact = request.app[QUO_SIM_KEY].contacts.update(request.match_info["id"], body)
    except ExternalIdConflictError:
        return json_response({**CONFLICT_BODY, "message": "Failed to update contact"}, 409)
    if contact is None:
        return not_found(message="Contact not found")
    _fire(request, contact)
    return json_response({"data": contact})


@routes.delete("/v1/contacts/{id}")
async def delete_contact(request: web.Request) -> web.Response:
    store = request.app[QUO_SIM_KEY].contacts
    contact = store.contacts.get(request.match_info["id"])
    if contact is None or not store.delete(contact["id"]):
        return not_found(message="Contact not found")
    _fire(request, contact, deleted=True)
    return web.Response(status=204)


@routes.post("/v1/contacts/bulk")
async def bulk_create_contacts(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    body = await read_json(request)
    items = body.get("contacts") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise BadRequestError([field_error("/contacts", "Expected array", items, "array")])
    limit = sim.config.bulk_max_contacts
    if limit is not None and len(items) > limit:
        message = f"Expected array length less or equal to {limit}"
        raise BadRequestError([field_error("/contacts", message, len(items), "array")])
    valid: list[JsonObject] = []
    for item in items:
        try:
            valid.append(_validated(request, item, partial=False))
        except BadRequestError:
            sim.bulk.counters.dropped_invalid += 1  # Quo reports nothing: only we know
    sim.bulk.submit(valid)
    return web.Response(status=202)
