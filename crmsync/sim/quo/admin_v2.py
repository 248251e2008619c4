"""`/_sim/...` admin routes for the 2026-03-30 system, for tests in other processes.

No auth, no rate limit, not counted. Each occurrence route answers the `Publication`
as JSON (`{"eventId", "type", "resource", "deliveries": [...], "legacy": ...}`) after
the first attempts, like the in-process helpers:

- `POST /_sim/publish` `{"type", "resource", "context"?, "links"?, "eventId"?,
  "sign"?: {"key"?, "timestamp"?, "omit"?}}` (`sign` spoils the first attempt)
- `POST /_sim/sms` `{"participant", "text", "direction"?, "phoneNumberId"?}`
- `POST /_sim/calls/{completed|missed|voicemail|recording|summary|transcript}`
  `{"call": "AC…" or "+1…", "direction"?, "status"?, "duration"?, "phoneNumberId"?,
  "transcript"?, "summary"?, "nextSteps"?, "dialogue"?: [{"content", "identifier"}]}`
- `POST /_sim/contacts/app-create` `{fields}`, `POST /_sim/contacts/{id}/app-edit`
  `{fields}`, `POST /_sim/contacts/{id}/app-delete` (fields as in `OccurrenceHelpers`)
- `GET /_sim/webhooks-v2` → every new-system webhook with its `key`;
  `GET /_sim/webhooks-v2/{id}/deliveries` → its whole log, oldest first, with attempts
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from aiohttp import web

from crmsync.sim.quo.admin import decode_body, results_json
from crmsync.sim.quo.delivery_log_v2 import SignOverride
from crmsync.sim.quo.publish import Publication
from crmsync.sim.quo.state import QUO_SIM_KEY, QuoSim
from crmsync.sim.quo.wire import JsonObject, json_response

routes = web.RouteTableDef()


class _Sign(msgspec.Struct, forbid_unknown_fields=True):
    key: str | None = None
    timestamp: int | None = None
    omit: bool = False


class _Publish(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    type: str
    resource: JsonObject
    context: JsonObject | None = None
    links: JsonObject | None = None
    event_id: str | None = None
    sign: _Sign | None = None


class _Sms(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    participant: str
    text: str
    direction: Literal["incoming", "outgoing"] = "incoming"
    phone_number_id: str | None = None


class _Line(msgspec.Struct, forbid_unknown_fields=True):
    content: str
    identifier: str | None = None


class _Call(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    call: str
    direction: Literal["incoming", "outgoing"] | None = None
    status: str | None = None
    duration: int | None = None
    phone_number_id: str | None = None
    transcript: str | None = None
    voicemail_duration: float = 30.0
    summary: list[str] | None = None
    next_steps: list[str] | None = None
    dialogue: list[_Line] | None = None


def publication_json(publication: Publication) -> JsonObject:
    legacy = publication.legacy
    return {
        "eventId": publication.event_id, "type": publication.event_type,
        "resource": publication.resource,
        "deliveries": [{"webhookId": d.webhook_id, **d.wire()} for d in publication.deliveries],
        "legacy": None if legacy is None else {
            "eventId": legacy.id, "deliveries": results_json(publication.legacy_results),
        },
    }


def _answer(publication: Publication) -> web.Response:
    return json_response(publication_json(publication))


@routes.post("/_sim/publish")
async def publish(request: web.Request) -> web.Response:
    body = await decode_body(request, _Publish)
    sign = None if body.sign is None else SignOverride(
        key=body.sign.key, timestamp=body.sign.timestamp, omit=body.sign.omit
    )
    return _answer(await request.app[QUO_SIM_KEY].publish(
        body.type, body.resource, context=body.context, links=body.links,
        event_id=body.event_id, sign=sign,
    ))


@routes.post("/_sim/sms")
async def sms(request: web.Request) -> web.Response:
    body = await decode_body(request, _Sms)
    return _answer(await request.app[QUO_SIM_KEY].sms(
        body.participant, body.text, body.direction, phone_number_id=body.phone_number_id
    ))


async def _call_event(sim: QuoSim, kind: str, body: _Call) -> Publication:
    new_call: dict[str, Any] = {
        name: value
        for name, value in (("direction", body.direction), ("status", body.status),
                            ("duration", body.duration),
                            ("phone_number_id", body.phone_number_id))
        if value is not None
    }
    call = body.call
    if kind == "voicemail":
        return await sim.voicemail(
            call, transcript=body.transcript, duration=body.voicemail_duration, **new_call
        )
    if kind == "summary":
        return await sim.summary(call, body.summary or [], body.next_steps, **new_call)
    if kind == "transcript":
        dialogue = [(line.content, line.identifier) for line in body.dialogue or []]
        return await sim.transcript(call, dialogue, **new_call)
    helpers = {"completed": sim.call_completed, "missed": sim.call_missed,
               "recording": sim.recording}
    return await helpers[kind](call, **new_call)


@routes.post(r"/_sim/calls/{kind:completed|missed|voicemail|recording|summary|transcript}")
async def call_event(request: web.Request) -> web.Response:
    body = await decode_body(request, _Call)
    sim = request.app[QUO_SIM_KEY]
    try:
        return _answer(await _call_event(sim, request.match_info["kind"], body))
    except KeyError as exc:
        raise web.HTTPNotFound(text=f"no such call: {exc}") from exc


async def _fields(request: web.Request) -> dict[str, Any]:
    return await decode_body(request, dict[str, Any])


@routes.post("/_sim/contacts/app-create")
async def app_create(request: web.Request) -> web.Response:
    fields = await _fields(request)
    try:
        publication = await request.app[QUO_SIM_KEY].create_contact_in_app(**fields)
    except TypeError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    return _answer(publication)


@routes.post("/_sim/contacts/{id}/app-edit")
async def app_edit(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    contact_id = request.match_info["id"]
    if contact_id not in sim.contacts.contacts:
        raise web.HTTPNotFound(text="no such contact")
    fields = await _fields(request)
    try:
        return _answer(await sim.edit_contact_in_app(contact_id, **fields))
    except TypeError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc


@routes.post("/_sim/contacts/{id}/app-delete")
async def app_delete(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    contact_id = request.match_info["id"]
    if contact_id not in sim.contacts.contacts:
        raise web.HTTPNotFound(text="no such contact")
    return _answer(await sim.delete_contact_in_app(contact_id))


@routes.get("/_sim/webhooks-v2")
async def webhooks_v2(request: web.Request) -> web.Response:
    return json_response({"data": list(request.app[QUO_SIM_KEY].webhooks_v2.values())})


@routes.get("/_sim/webhooks-v2/{id}/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    if request.match_info["id"] not in sim.webhooks_v2:
        raise web.HTTPNotFound(text="no such webhook")
    log = sim.hooks.log.get(request.match_info["id"], {}).values()
    return json_response({"data": [{**d.wire(), **d.detail()} for d in log]})
