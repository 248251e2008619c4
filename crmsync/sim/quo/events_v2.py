"""A webhook's test events and delivery log: `/webhooks/{id}/events…`.

- `POST …/events/test` `{"eventType"}` → 200 with the rendered sample envelope (not
  wrapped in `data`); the signed delivery follows asynchronously, logged with a null
  `eventId` and `resourceId`. It goes to the webhook even when it is disabled: the
  migration guide proves a disabled replacement with test events (Quo does not say
  more).
- `GET …/events`: newest first; `status`, `eventType` / `eventType[in]`, `resourceId`,
  `createdAt[gt]` / `createdAt[lt]` (and the deprecated `eventTypes`, `createdAfter`,
  `createdBefore`), `limit` 1-50 (default 10), `after` = the previous `nextCursor`.
- `GET …/events/{deliveryId}`: the delivery with `requestBody` and its attempts,
  newest first. `POST …/retry` → 202 `{}`, one more attempt in the background.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import msgspec
from aiohttp import web

from crmsync.sim.quo.delivery_log_v2 import Delivery
from crmsync.sim.quo.samples_v2 import sample_event
from crmsync.sim.quo.state import QUO_SIM_KEY
from crmsync.sim.quo.validation_v2 import validate_test_event
from crmsync.sim.quo.webhooks_v2 import find
from crmsync.sim.quo.wire import json_response
from crmsync.sim.quo.wire_v2 import (
    ApiError,
    decode_cursor,
    encode_cursor,
    invalid,
    limit,
    read_body,
)

routes = web.RouteTableDef()

STATUSES = ("success", "pending", "sending", "failed")
Filter = Callable[[Delivery], bool]


@routes.post("/webhooks/{id}/events/test")
async def send_test_event(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    webhook = find(sim, request)
    event_type = validate_test_event(await read_body(request))
    sample = sample_event(event_type)
    delivery = sim.hooks.create(
        webhook["id"], event_type, msgspec.json.encode(sample), event_id=None, resource_id=None
    )
    sim.hooks.start(delivery)
    return json_response(sample)


def _time(request: web.Request, *names: str) -> datetime | None:
    for name in names:
        raw = request.query.get(name)
        if raw is None:
            continue
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise invalid(f"/query/{name}", "Expected string to match 'date-time' format",
                          raw, {"type": "string", "format": "date-time"}) from None
        if moment.tzinfo is None:
            raise invalid(f"/query/{name}", "Expected a time zone", raw,
                          {"type": "string", "format": "date-time"})
        return moment
    return None


def _filters(request: web.Request) -> list[Filter]:
    query = request.query
    filters: list[Filter] = []
    status = query.get("status")
    if status is not None:
        if status not in STATUSES:
            raise invalid("/query/status", "Expected union value", status,
                          {"enum": list(STATUSES)})
        filters.append(lambda d: d.status == status)
    raw_types = query.get("eventType[in]") or query.get("eventTypes")
    types = set(raw_types.split(",")) if raw_types else set()
    if "eventType" in query:
        types.add(query["eventType"])
    if types:
        filters.append(lambda d: d.event_type in types)
    if "resourceId" in query:
        wanted = query["resourceId"]
        filters.append(lambda d: d.resource_id == wanted)
    after = _time(request, "createdAt[gt]", "createdAfter")
    if after is not None:
        filters.append(lambda d: d.created_at > after)
    before = _time(request, "createdAt[lt]", "createdBefore")
    if before is not None:
        filters.append(lambda d: d.created_at < before)
    return filters


@routes.get("/webhooks/{id}/events")
async def list_deliveries(request: web.Request) -> web.Response:
    sim = request.app[QUO_SIM_KEY]
    webhook = find(sim, request)
    filters = _filters(request)
    size = limit(request)
    position = decode_cursor(request)
    newest_first = sorted(
        sim.hooks.log.get(webhook["id"], {}).values(), key=lambda d: d.seq, reverse=True
    )
    found = [
        d for d in newest_first
        if (position is None or d.seq < position) and all(f(d) for f in filters)
    ]
    page = found[:size]
    cursor = encode_cursor(page[-1].seq) if len(found) > size else None
    return json_response({"data": [d.wire() for d in page], "nextCursor": cursor})


def _delivery(request: web.Request) -> Delivery:
    sim = request.app[QUO_SIM_KEY]
    webhook = find(sim, request)
    wanted = request.match_info["deliveryId"]
    delivery = sim.hooks.log.get(webhook["id"], {}).get(wanted)
    if delivery is None:
        raise ApiError(404, f"Webhook event with ID {wanted} not found")
    return delivery


@routes.get("/webhooks/{id}/events/{deliveryId}")
async def get_delivery(request: web.Request) -> web.Response:
    return json_response({"data": _delivery(request).detail()})


@routes.post("/webhooks/{id}/events/{deliveryId}/retry")
async def retry_delivery(request: web.Request) -> web.Response:
    delivery = _delivery(request)
    request.app[QUO_SIM_KEY].hooks.retry(delivery)
    return json_response({}, 202)
