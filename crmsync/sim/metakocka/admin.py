"""`/_sim/` admin routes for tests and tools that run the simulator in another process.

No authentication, no call limit, never counted. Routes:

* `GET /_sim/stats`: calls by endpoint, company and outcome, search overlaps, data
  counts per company, the fault settings. `POST /_sim/stats/reset` zeroes the calls.
* `GET|POST /_sim/faults`: the fault settings; POST takes `quo.faults.FaultUpdate`
  (counted and rate-based 5xx pages, drops before and after applying, latency,
  forced "Quote exceeds" as `force_429_next` / `force_429_seconds`).
* `GET /_sim/companies/{company_id}/partners` → {"partners": [...]} in creation order.
* `POST /_sim/companies/{company_id}/partners` {customer, business_entity?,
  tax_id_number?, street?, post_number?, city?, country?, contact_name?, email?, gsm?,
  phone?} → 201 {"mk_id"}: a partner created in the Metakocka app.
* `PATCH /_sim/companies/{company_id}/partners/{mk_id}` {fields of
  `MetakockaSim.edit_partner`} → the partner: an edit made in the Metakocka app.
* `POST /_sim/companies/{company_id}/documents` {partner_mk_id, doc_type?} → 201
  {"mk_id", "last_change_ts"}: a document changed now.
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec
from aiohttp import web

from crmsync.sim._kit.admin import add_fault_routes, only
from crmsync.sim._kit.http import json_response
from crmsync.sim.metakocka.company import Company
from crmsync.sim.metakocka.model import timestamp
from crmsync.sim.metakocka.state import METAKOCKA_SIM_KEY, MetakockaSim
from crmsync.sim.quo.faults import FaultUpdate, fault_settings

routes = web.RouteTableDef()
APP_PARTNER_FIELDS = frozenset(inspect.signature(MetakockaSim.add_partner).parameters) - {
    "self", "company_id",
}
add_fault_routes(
    routes, METAKOCKA_SIM_KEY, FaultUpdate,
    shown=lambda sim: fault_settings(sim.faults),
    apply=lambda sim, update: update.apply(sim.faults),
)


@routes.get("/_sim/stats")
async def stats(request: web.Request) -> web.Response:
    sim = request.app[METAKOCKA_SIM_KEY]
    return json_response({**sim.snapshot(), "faults": fault_settings(sim.faults)})


@routes.post("/_sim/stats/reset")
async def reset_stats(request: web.Request) -> web.Response:
    request.app[METAKOCKA_SIM_KEY].stats.reset()
    return json_response({})


@routes.get("/_sim/companies/{company_id}/partners")
async def list_partners(request: web.Request) -> web.Response:
    company = _company(request)
    return json_response({"partners": [p.render() for p in company.partners.values()]})


@routes.post("/_sim/companies/{company_id}/partners")
async def add_partner(request: web.Request) -> web.Response:
    company = _company(request)
    body = await _body(request)
    only(body, APP_PARTNER_FIELDS)
    if not isinstance(body.get("customer"), str):
        raise web.HTTPBadRequest(reason="customer is required")
    try:
        partner = request.app[METAKOCKA_SIM_KEY].add_partner(company.company_id, **body)
    except TypeError as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None
    return json_response({"mk_id": partner.mk_id}, status=201)


@routes.patch("/_sim/companies/{company_id}/partners/{mk_id}")
async def edit_partner(request: web.Request) -> web.Response:
    company = _company(request)
    mk_id = request.match_info["mk_id"]
    if mk_id not in company.partners:
        raise web.HTTPNotFound(reason="no such partner")
    body = await _body(request)
    try:
        partner = request.app[METAKOCKA_SIM_KEY].edit_partner(company.company_id, mk_id, **body)
    except ValueError as exc:
        raise web.HTTPBadRequest(reason=str(exc)) from None
    return json_response(partner.render())


@routes.post("/_sim/companies/{company_id}/documents")
async def add_document(request: web.Request) -> web.Response:
    company = _company(request)
    body = await _body(request)
    only(body, frozenset({"partner_mk_id", "doc_type"}))
    sim = request.app[METAKOCKA_SIM_KEY]
    doc_type = body.get("doc_type", "sales_order")
    if doc_type not in sim.config.document_types:
        raise web.HTTPBadRequest(reason=f"unknown doc_type {doc_type}")
    try:
        document = sim.add_document(company.company_id, str(body.get("partner_mk_id")),
                                    doc_type)
    except KeyError:
        raise web.HTTPBadRequest(reason="no such partner") from None
    return json_response({"mk_id": document.mk_id,
                          "last_change_ts": timestamp(document.last_change)}, status=201)


def _company(request: web.Request) -> Company:
    company = request.app[METAKOCKA_SIM_KEY].companies.get(request.match_info["company_id"])
    if company is None:
        raise web.HTTPNotFound(reason="no such company")
    return company


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(await request.read()) if request.can_read_body else {}
    except msgspec.DecodeError:
        raise web.HTTPBadRequest(reason="body is not JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="body must be a JSON object")
    return body
