"""Webhook routes: create (the only response with the secret), list, get, update, delete."""

from __future__ import annotations

import secrets

from aiohttp import web

from crmsync.sim.attio.errors import (
    data_object,
    json_response,
    not_found,
    query_int,
    read_json_object,
    validation_error,
)
from crmsync.sim.attio.state import ATTIO_SIM_KEY, AttioSim
from crmsync.sim.attio.subscriptions import (
    Webhook,
    validate_subscriptions,
    validate_target_url,
)

routes = web.RouteTableDef()


@routes.post("/v2/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    data = data_object(await read_json_object(request))
    if set(data) != {"target_url", "subscriptions"}:
        raise validation_error('"data" needs exactly "target_url" and "subscriptions".')
    webhook = Webhook(
        webhook_id=sim.new_id(),
        target_url=validate_target_url(
            data["target_url"], allow_http_loopback=sim.config.allow_http_loopback_targets
        ),
        subscriptions=validate_subscriptions(data["subscriptions"]),
        secret=secrets.token_hex(32),
        created_at=sim.now(),
    )
    sim.webhooks[webhook.webhook_id] = webhook
    return json_response({"data": webhook.render(sim.workspace, with_secret=True)})


@routes.get("/v2/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    limit = query_int(request, "limit", 10, maximum=100)
    offset = query_int(request, "offset", 0, maximum=2**31)
    page = list(sim.webhooks.values())[offset:offset + limit]
    return json_response({"data": [w.render(sim.workspace) for w in page]})


@routes.get("/v2/webhooks/{webhook_id}")
async def get_webhook(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    webhook = _webhook(sim, request.match_info["webhook_id"])
    return json_response({"data": webhook.render(sim.workspace)})


@routes.patch("/v2/webhooks/{webhook_id}")
async def update_webhook(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    webhook = _webhook(sim, request.match_info["webhook_id"])
    data = data_object(await read_json_object(request))
    if not data or not set(data) <= {"target_url", "subscriptions"}:
        raise validation_error('"data" may only contain "target_url" and "subscriptions".')
    if "target_url" in data:
        webhook.target_url = validate_target_url(
            data["target_url"], allow_http_loopback=sim.config.allow_http_loopback_targets
        )
    if "subscriptions" in data:
        webhook.subscriptions = validate_subscriptions(data["subscriptions"])
    return json_response({"data": webhook.render(sim.workspace)})


@routes.delete("/v2/webhooks/{webhook_id}")
async def delete_webhook(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    webhook = _webhook(sim, request.match_info["webhook_id"])
    del sim.webhooks[webhook.webhook_id]
    return json_response({})


def _webhook(sim: AttioSim, webhook_id: str) -> Webhook:
    webhook = sim.webhooks.get(webhook_id)
    if webhook is None:
        raise not_found(f'Webhook with ID "{webhook_id}" not found.')
    return webhook
