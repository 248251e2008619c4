"""v1 webhook routes: create (v2 payloads only), list (passwords masked), delete.

`subscription_url` must be an absolute http(s) URL; `event_action` is `*`, `create`,
`change` or `delete` (v1's `added|updated|...` are a 400 on a 2.0 webhook);
`event_object` one of Pipedrive's objects or `*`; at most `max_webhooks_per_user`
(40) per user. Version 1.0 webhooks are not simulated (400).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web

from crmsync.sim.pipedrive.errors import PipedriveError, invalid, not_found, ok, only, read_object
from crmsync.sim.pipedrive.model import Webhook
from crmsync.sim.pipedrive.state import PIPEDRIVE_SIM_KEY

routes = web.RouteTableDef()

FIELDS = frozenset({"subscription_url", "event_action", "event_object", "user_id",
                    "http_auth_user", "http_auth_password", "version", "name"})
ACTIONS = ("*", "create", "change", "delete")
OBJECTS = ("*", "activity", "deal", "lead", "note", "organization", "person", "pipeline",
           "product", "stage", "user", "project")


@routes.post("/v1/webhooks")
async def create_webhook(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    body = await read_object(request)
    only(body, FIELDS, strict=sim.config.reject_unknown_fields)
    url = body.get("subscription_url")
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid("subscription_url", "must be an absolute http(s) URL")
    version = body.get("version", "2.0")
    if version != "2.0":
        raise invalid("version", "only 2.0 webhooks are simulated")
    action, obj = body.get("event_action"), body.get("event_object")
    if action not in ACTIONS:
        raise invalid("event_action", f"must be one of {', '.join(ACTIONS)}")
    if obj not in OBJECTS:
        raise invalid("event_object", f"must be one of {', '.join(OBJECTS)}")
    user_id = body.get("user_id", sim.config.user_id)
    if user_id != sim.config.user_id:
        raise invalid("user_id", f"user {user_id} not found")
    for name in ("http_auth_user", "http_auth_password", "name"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise invalid(name, "must be a string")
    if sum(1 for w in sim.webhooks.values() if w.user_id == user_id) >= (
        sim.config.max_webhooks_per_user
    ):
        raise PipedriveError(
            400, f"Webhooks limit reached: at most {sim.config.max_webhooks_per_user} "
                 "webhooks per user")
    webhook = Webhook(
        sim.next_id("webhook"), str(url), str(action), str(obj), user_id,
        sim.config.company_id, sim.now(), name=body.get("name"),
        http_auth_user=body.get("http_auth_user"),
        http_auth_password=body.get("http_auth_password"),
    )
    sim.webhooks[webhook.id] = webhook
    return ok(webhook.render(), status=201)


@routes.get("/v1/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    return ok([w.render() for w in sim.webhooks.values()])


@routes.delete("/v1/webhooks/{id}")
async def delete_webhook(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    raw = request.match_info["id"]
    if not raw.isdigit() or int(raw) not in sim.webhooks:
        raise not_found("Webhook")
    del sim.webhooks[int(raw)]
    return ok({"id": int(raw)})
