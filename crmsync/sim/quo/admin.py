"""`/_sim/*` admin routes for tests in other processes and for `crmsync demo`.

Not under `/v1`: no auth, no rate limit, not counted. JSON in and out:

- `GET /_sim/stats` → `QuoSim.snapshot()`; `POST /_sim/reset-stats` → 204
- `GET|POST /_sim/faults` → current fault settings; POST takes `FaultUpdate`
- `GET /_sim/contacts` → `{"data": [visible contacts], "pending": n}`;
  `POST /_sim/contacts/flush` → `{"materialised": n}` (pending bulk made visible now)
- `POST /_sim/bulk-never-visible` `{"externalIds": [...]}` → `{"externalIds": [...]}`
- `POST /_sim/api-keys` `{"key": "..."}` → 201 (activates after `key_activation_delay`)
- `GET /_sim/webhooks` → `{"data": [every webhook, any user]}`; `DELETE
  /_sim/webhooks/{id}` → 204 (removed, as in Quo's UI: no more deliveries);
  `POST /_sim/webhooks/{id}/disable` → the webhook, `status` "disabled"
- `POST /_sim/simulate/message` `{"participant", "text", "direction"?, "phoneNumberId"?}`
  and `POST /_sim/simulate/call` `{"participant", "duration"?, "summary"?, "transcript"?}`
  store the activity and publish its events through both webhook systems →
  `{"data": record, "deliveries": [first attempts, legacy then 2026-03-30]}`
  (`admin_v2` has the finer-grained routes of the new system)
"""

from __future__ import annotations

from typing import Literal, TypeVar

import msgspec
from aiohttp import web

from crmsync.sim.quo.delivery import DeliveryResult
from crmsync.sim.quo.faults import FaultUpdate, fault_settings
from crmsync.sim.quo.publish import Publication
from crmsync.sim.quo.state import QUO_SIM_KEY
from crmsync.sim.quo.wire import JsonObject, json_response

routes = web.RouteTableDef()
T = TypeVar("T")


class _Key(msgspec.Struct, forbid_unknown_fields=True):
    key: str


class _NeverVisible(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    external_ids: list[str]


class _SimulatedMessage(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    participant: str
    text: str
    direction: Literal["incoming", "outgoing"] = "incoming"
    phone_number_id: str | None = None


class _SimulatedCall(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    participant: str
    direction: Literal["incoming", "outgoing"] = "incoming"
    status: str = "completed"
    duration: int = 60
    phone_number_id: str | None = None
    summary: list[str] | None = None
    transcript: list[str] | None = None


async def decode_body(request: web.Request, kind: type[T]) -> T:
    """The body decoded as `kind`; a plain 400 when it does not fit."""
    try:
        return msgspec.json.decode(await request.read(), type=kind)
    except msgspec.DecodeError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc


def results_json(results: list[DeliveryResult]) -> list[JsonObject]:
    return [
        {"webhookId": r.webhook_id, "url": r.url, "status": r.status, "error": r.error,
         "eventId": r.event.id, "type": r.event.type}
        for r in results
    ]


def deliveries_json(publication: Publication) -> list[JsonObject]:
    """First attempts of both systems in one shape (`status` None: no answer)."""
    found = results_json(publication.legacy_results)
    for delivery in publication.deliveries:
        item: JsonObject = {
            "webhookId": delivery.webhook_id, "url": None, "status": None, "error": None,
            "eventId": publication.event_id, "type": publication.event_type,
            "deliveryId": delivery.id,
        }
        if delivery.attempts:
            attempt = delivery.attempts[0]
            item["url"] = attempt.url
            if attempt.response_status_code:
                item["status"] = attempt.response_status_code
            else:
                item["error"] = attempt.response_body
        found.append(item)
    return found


@routes.get("/_sim/stats")
async def stats(request: web.Request) -> web.Response:
    return json_response(request.app[QUO_SIM_KEY].snapshot())


@routes.post("/_sim/reset-stats")
async def reset_stats(request: web.Request) -> web.Response:
    request.app[QUO_SIM_KEY].reset_stats()
    return web.Response(status=204)


@routes.get("/_sim/faults")
async def get_faults(request: web.Request) -> web.Response:
    return json_response(fault_settings(request.app[QUO_SIM_KEY].faults))


@routes.post("/_sim/faults")
async def set_faults(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    (await decode_body(request, FaultUpdate)).apply(sim.faults)
    return json_response(fault_settings(sim.faults))


@routes.get("/_sim/contacts")
async def contacts(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    visible = list(sim.contacts.contacts.values())
    return json_response({"data": visible, "pending": sim.bulk.pending_count})


@routes.post("/_sim/contacts/flush")
async def flush_contacts(request: web.Request) -> web.Response:
    return json_response({"materialised": request.app[QUO_SIM_KEY].bulk.flush()})


@routes.post("/_sim/bulk-never-visible")
async def never_visible(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    sim.bulk_never_visible.update((await decode_body(request, _NeverVisible)).external_ids)
    return json_response({"externalIds": sorted(sim.bulk_never_visible)})


@routes.post("/_sim/api-keys")
async def add_api_key(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    body = await decode_body(request, _Key)
    sim.add_api_key(body.key)
    return json_response({"activatesIn": sim.config.key_activation_delay}, 201)


@routes.get("/_sim/webhooks")
async def webhooks(request: web.Request) -> web.Response:
    return json_response({"data": list(request.app[QUO_SIM_KEY].webhooks.values())})


@routes.delete("/_sim/webhooks/{id}")
async def remove_webhook(request: web.Request) -> web.Response:
    if request.app[QUO_SIM_KEY].webhooks.pop(request.match_info["id"], None) is None:
        raise web.HTTPNotFound(text="no such webhook")
    return web.Response(status=204)


@routes.post("/_sim/webhooks/{id}/disable")
async def disable_webhook(request: web.Request) -> web.Response:
    webhook = request.app[QUO_SIM_KEY].webhooks.get(request.match_info["id"])
    if webhook is None:
        raise web.HTTPNotFound(text="no such webhook")
    webhook["status"] = "disabled"
    return json_response({"data": webhook})


@routes.post("/_sim/simulate/message")
async def simulate_message(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    body = await decode_body(request, _SimulatedMessage)
    publication = await sim.sms(
        body.participant, body.text, body.direction, phone_number_id=body.phone_number_id
    )
    message = sim.workspace.messages[publication.resource["id"]]
    return json_response({"data": message, "deliveries": deliveries_json(publication)})


@routes.post("/_sim/simulate/call")
async def simulate_call(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    body = await decode_body(request, _SimulatedCall)
    completed = await sim.call_completed(
        body.participant, direction=body.direction, status=body.status,
        duration=body.duration, phone_number_id=body.phone_number_id,
    )
    call = sim.workspace.calls[completed.resource["id"]]
    publications = [completed]
    if body.summary is not None:
        publications.append(await sim.summary(call, body.summary))
    if body.transcript is not None:
        dialogue: list[tuple[str, str | None]] = [
            (line, body.participant if i % 2 == 0 else None)
            for i, line in enumerate(body.transcript)
        ]
        publications.append(await sim.transcript(call, dialogue))
    deliveries = [item for p in publications for item in deliveries_json(p)]
    return json_response({"data": call, "deliveries": deliveries})
