"""`search` over a company's documents, one search at a time per company.

Body: `doc_type` (required, one of the simulator's document types), `limit` (at most
100: more is cut to 100, and the answer says so), `offset`, `result_type` (`"doc"`:
whole documents with their partner inline; otherwise `mk_id` and `count_code`
only), `query_advance` items of type `last_change_from` / `last_change_to` (ISO
timestamps with offset, inclusive; only for `sales_order` and `complaint`, as
documented) and `partner_mk_id`. Results in creation order; `result_all_records`
counts every match. Each search holds its company's search slot for the configured
`search_latency`, so concurrent ones queue (and are counted) as on Metakocka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from crmsync.sim._kit.http import json_response
from crmsync.sim.metakocka import wire
from crmsync.sim.metakocka.company import Company
from crmsync.sim.metakocka.model import Document, date, timestamp
from crmsync.sim.metakocka.partners import API_PATH
from crmsync.sim.metakocka.state import BODY_KEY, COMPANY_KEY, METAKOCKA_SIM_KEY, answer
from crmsync.sim.metakocka.wire import JSONObject, parameter_error

routes = web.RouteTableDef()
MAX_LIMIT = 100
LAST_CHANGE_TYPES = frozenset({"sales_order", "complaint"})


@routes.post(f"{API_PATH}/search")
async def search(request: web.Request) -> web.Response:
    sim = request.app[METAKOCKA_SIM_KEY]
    body, company = request[BODY_KEY], request[COMPANY_KEY]
    doc_type = wire.text(body, "doc_type")
    if not doc_type:
        raise parameter_error("Parameter doc_type is required.")
    if doc_type not in sim.config.document_types:
        raise parameter_error(f"Unknown doc_type {doc_type}.")
    offset = wire.number(body, "offset", 0)
    limit = min(wire.number(body, "limit", MAX_LIMIT), MAX_LIMIT)
    keep = _filters(doc_type, wire.children(body, "query_advance"))
    as_docs = wire.text(body, "result_type") == "doc"
    async with company.search_slot():
        if sim.config.search_latency > 0:
            await asyncio.sleep(sim.config.search_latency)
        matches = [d for d in company.documents if d.doc_type == doc_type and keep(d)]
        page = matches[offset:offset + limit]
        result = [_render(company, d) if as_docs else
                  {"mk_id": d.mk_id, "opr_code": "0", "count_code": d.count_code}
                  for d in page]
    return json_response(answer(request, {
        "opr_code": "0", "result_all_records": len(matches), "result_count": len(page),
        "offset": offset, "limit": limit, "result": result,
    }))


def _filters(doc_type: str, items: list[JSONObject]) -> Callable[[Document], bool]:
    checks: list[Callable[[Document], bool]] = []
    for item in items:
        kind, value = wire.text(item, "type"), wire.text(item, "value")
        if kind in ("last_change_from", "last_change_to"):
            if doc_type not in LAST_CHANGE_TYPES:
                raise parameter_error(f"Query type {kind} is not supported for {doc_type}.")
            checks.append(_changed(kind, _moment(kind, value)))
        elif kind == "partner_mk_id":
            checks.append(_of_partner(value or ""))
        else:
            raise parameter_error(f"Unknown query_advance type {kind}.")
    return lambda document: all(check(document) for check in checks)


def _changed(kind: str, moment: datetime) -> Callable[[Document], bool]:
    if kind == "last_change_from":
        return lambda document: document.last_change >= moment
    return lambda document: document.last_change <= moment


def _of_partner(mk_id: str) -> Callable[[Document], bool]:
    return lambda document: document.partner_mk_id == mk_id


def _moment(kind: str, value: str | None) -> datetime:
    try:
        moment = datetime.fromisoformat(value or "")
    except ValueError:
        raise parameter_error(f"Not valid date for {kind}") from None
    if moment.tzinfo is None:
        raise parameter_error(f"Not valid date for {kind}")
    return moment


def _render(company: Company, document: Document) -> JSONObject:
    partner = company.partners.get(document.partner_mk_id)
    return {
        "mk_id": document.mk_id, "doc_type": document.doc_type, "opr_code": "0",
        "count_code": document.count_code, "doc_date": date(document.doc_date),
        "last_change_ts": timestamp(document.last_change),
        "partner": None if partner is None else partner.render_on_document(),
    }
