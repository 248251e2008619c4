"""`/webhooks` routes of the 2026-03-30 system: create, list, get, PATCH, delete, rotate.

Served unprefixed next to `/v1` (the gateway enforces `Quo-Api-Version` first). Ids
are stringified integers (anything else is 400 `0303400`); the `whsec_` key is shown
only by create (201) and rotate; delete is 204 without a body. PATCH replaces
`events` as a whole, and `resourceIds: []` or `null` clears the filter (`["*"]`). At
most 50 webhooks per workspace. `QuoSim.webhooks_v2` holds them with their `key`.
"""

from __future__ import annotations

from aiohttp import web

from crmsync.sim.quo.state import QUO_SIM_KEY, QuoSim
from crmsync.sim.quo.validation_v2 import validate_create, validate_patch
from crmsync.sim.quo.wire import json_response, now_iso
from crmsync.sim.quo.wire_v2 import (
    API_VERSION,
    INVALID_INPUT_CODE,
    ApiError,
    JsonObject,
    read_body,
    webhook_id,
)

routes = web.RouteTableDef()

MAX_WEBHOOKS = 50
HIDDEN = ("key",)


def public(webhook: JsonObject) -> JsonObject:
    """The webhook as GET, list and PATCH show it (no signing key)."""
    return {k: v for k, v in webhook.items() if k not in HIDDEN}


def find(sim: QuoSim, request: web.Request) -> JsonObject:
    """The webhook named by the path, or the 2026 404."""
    wanted = webhook_id(request)
    webhook = sim.webhooks_v2.get(wanted)
    if webhook is None:
        raise ApiError(404, f"Webhook with ID {wanted} not found")
    return webhook


@routes.post("/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    body = validate_create(await read_body(request))
    if len(sim.webhooks_v2) >= MAX_WEBHOOKS:
        # Quo documents the limit, not the answer; a 400 like other invalid input.
        raise ApiError(
            400, f"A workspace can have at most {MAX_WEBHOOKS} webhooks",
            code=INVALID_INPUT_CODE,
        )
    now = now_iso()
    webhook: JsonObject = {
        "id": sim.hook_ids.webhook(),
        "orgId": sim.workspace.org_id,
        "label": body.get("label"),
        "status": body.get("status", "enabled"),
        "url": body["url"],
        "apiVersion": API_VERSION,
        "events": list(dict.fromkeys(body["events"])),
        "resourceIds": body.get("resourceIds") or ["*"],
        "createdAt": now,
        "updatedAt": now,
        "key": sim.hook_ids.key(),
    }
    sim.webhooks_v2[webhook["id"]] = webhook
    return json_response({"data": webhook}, 201)


@routes.get("/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    """Every webhook of the workspace; not paginated."""
    webhooks = request.app[QUO_SIM_KEY].webhooks_v2.values()
    return json_response({"data": [public(w) for w in webhooks]})


@routes.get("/webhooks/{id}")
async def get_webhook(request: web.Request) -> web.Response:
    return json_response({"data": public(find(request.app[QUO_SIM_KEY], request))})


@routes.patch("/webhooks/{id}")
async def update_webhook(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    webhook = find(sim, request)
    body = validate_patch(await read_body(request))
    for name in ("url", "status", "label"):
        if name in body:
            webhook[name] = body[name]
    if "events" in body:
        webhook["events"] = list(dict.fromkeys(body["events"]))
    if "resourceIds" in body:
        webhook["resourceIds"] = body["resourceIds"] or ["*"]
    webhook["updatedAt"] = now_iso()
    return json_response({"data": public(webhook)})


@routes.delete("/webhooks/{id}")
async def delete_webhook(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    webhook = find(sim, request)
    del sim.webhooks_v2[webhook["id"]]
    sim.hooks.forget(webhook["id"])
    return web.Response(status=204)


@routes.post("/webhooks/{id}/rotate")
async def rotate_key(request: web.Request) -> web.Response:
    """A new key, used from the next attempt on (no overlap: Quo documents none)."""
    sim = request.app[QUO_SIM_KEY]
    webhook = find(sim, request)
    webhook["key"] = sim.hook_ids.key()
    webhook["updatedAt"] = now_iso()
    return json_response({"data": {"key": webhook["key"]}})
