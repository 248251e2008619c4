"""`/v1/webhooks` routes: create per family, list, get, delete (there is no update).

Each family accepts only its own events; `resourceIds` is either up to 10 `PN…` ids
or `["*"]` (the default when omitted). The create answer carries the base64 signing
`key`, which `QuoSim.deliver_event` uses for the `openphone-signature` header.
`GET /v1/webhooks` lists one user's webhooks (the owner's unless `userId` is given).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from crmsync.sim.quo.state import QUO_SIM_KEY
from crmsync.sim.quo.validation import Checker
from crmsync.sim.quo.wire import (
    BadRequestError,
    JsonObject,
    field_error,
    json_response,
    not_found,
    now_iso,
    read_json,
)

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.Response]]

FAMILY_EVENTS: dict[str, frozenset[str]] = {
    "messages": frozenset({"message.received", "message.delivered"}),
    "calls": frozenset({"call.completed", "call.ringing", "call.recording.completed"}),
    "call-summaries": frozenset({"call.summary.completed"}),
    "call-transcripts": frozenset({"call.transcript.completed"}),
}
MAX_RESOURCE_IDS = 10
WEBHOOK_ERROR_CODE = "0300400"
PN_ID = re.compile(r"^PN")
US_ID = re.compile(r"^US")


def _check_events(check: Checker, body: JsonObject, allowed: frozenset[str]) -> None:
    events = body.get("events")
    if "events" not in body:
        check.fail("/events", "Expected required property", None, "array")
    elif not isinstance(events, list):
        check.fail("/events", "Expected array", events, "array")
    elif not events:
        check.fail("/events", "Expected array length greater or equal to 1", events, "array")
    else:
        for index, event in enumerate(events):
            if event not in allowed:
                message = "Expected union value: one of " + ", ".join(sorted(allowed))
                check.fail(f"/events/{index}", message, event)


def _check_resource_ids(check: Checker, body: JsonObject) -> None:
    if "resourceIds" not in body:
        return
    ids = body["resourceIds"]
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        check.fail("/resourceIds", "Expected union value", ids, "array")
    elif len(ids) > MAX_RESOURCE_IDS:
        message = f"Expected array length less or equal to {MAX_RESOURCE_IDS}"
        check.fail("/resourceIds", message, ids, "array")
    elif not (all(PN_ID.match(i) for i in ids) or all(i == "*" for i in ids)):
        check.fail("/resourceIds", "Expected union value", ids, "array")


def validate_webhook(body: Any, allowed: frozenset[str]) -> JsonObject:
    """Return `body` if it is a valid create-webhook body for a family."""
    check = Checker()
    if not isinstance(body, dict):
        not_object = field_error("", "Expected object", body, "object")
        raise BadRequestError([not_object], code=WEBHOOK_ERROR_CODE)
    check.string(body, "url", "", required=True)
    url = body.get("url")
    if isinstance(url, str):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            check.fail("/url", "Expected string to match 'uri' format", url)
    _check_events(check, body, allowed)
    _check_resource_ids(check, body)
    check.string(body, "label", "")
    check.string(body, "userId", "", pattern=(US_ID, "^US(.*)$"))
    status = body.get("status", "enabled")
    if status not in ("enabled", "disabled"):
        check.fail("/status", "Expected union value", status)
    check.raise_if_failed(WEBHOOK_ERROR_CODE)
    return body


def _make_create_handler(family: str) -> Handler:
    allowed = FAMILY_EVENTS[family]

    async def create_webhook(request: web.Request) -> web.Response:
        sim = request.app[QUO_SIM_KEY]
        body = validate_webhook(await read_json(request), allowed)
        now = now_iso()
        webhook: JsonObject = {
            "id": sim.ids.prefixed("WH"),
            "userId": body.get("userId") or sim.workspace.owner["id"],
            "orgId": sim.workspace.org_id,
            "label": body.get("label"),
            "status": body.get("status", "enabled"),
            "url": body["url"],
            "key": sim.ids.key(),
            "createdAt": now,
            "updatedAt": now,
            "deletedAt": None,
            "events": list(dict.fromkeys(body["events"])),
            "resourceIds": body.get("resourceIds") or ["*"],
        }
        sim.webhooks[webhook["id"]] = webhook
        return json_response({"data": webhook}, 201)

    create_webhook.__name__ = f"create_{family.replace('-', '_')}_webhook"
    return create_webhook


for _family in FAMILY_EVENTS:
    routes.post(f"/v1/webhooks/{_family}")(_make_create_handler(_family))


@routes.get("/v1/webhooks")
async def list_webhooks(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    user_id = request.query.get("userId") or sim.workspace.owner["id"]
    found = [w for w in sim.webhooks.values() if w["userId"] == user_id]
    return json_response({"data": found})


@routes.get("/v1/webhooks/{id}")
async def get_webhook(request: web.Request) -> web.Response:
    webhook = request.app[QUO_SIM_KEY].webhooks.get(request.match_info["id"])
    if webhook is None:
        return not_found("0300404", "Webhook not found")
    return json_response({"data": webhook})


@routes.delete("/v1/webhooks/{id}")
async def delete_webhook(request: web.Request) -> web.Response:
    if request.app[QUO_SIM_KEY].webhooks.pop(request.match_info["id"], None) is None:
        return not_found("0300404", "Webhook not found")
    return web.Response(status=204)
