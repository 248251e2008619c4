"""The management API (INTERFACE §9): `/api/…` on the daemon's listener.

On only when `http.admin_token` is set (else every `/api/…` is 404). Every request,
whatever its path or method, known or not, is checked in this order:

1. `Authorization: Bearer <token>`, compared in constant time (both sides HMAC'd with
   a per-process key to 32 bytes, then `hmac.compare_digest`: the time says nothing of
   either length or content) → 401, before anything else is looked at;
2. the path (404 when no route has it), the tenant (404 unknown or not running; with
   replicas, a tenant another replica runs is forwarded there, see `_forward`; 503
   while it moves between replicas), the method (405);
3. the body or query (400, one line: not JSON, the wrong shape, 0 or more than
   `MAX_IDS` ids, an id that is not a non-empty string);
4. the Metakocka routes: 409 when the tenant has no `[tenants.metakocka]` link.

The routes are a table (`ROUTES`, one `ApiRoute` each): a new route is one entry,
given to `build_app(api_routes=...)` or added here. The Metakocka routes answer with
the rows of `metakocka_rows.py` (what `crmsync metakocka … --json` prints). Handlers
reach the running tenant through `ManagedTenant` (`keys.py`), which the daemon's
`TenantRuntime` implements. The token is never logged, echoed or stored;
`crmsync_api_requests_total` counts every answer by tenant, route template and status.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import aiohttp
import msgspec
from aiohttp import web

from crmsync import log_context, metrics
from crmsync.domain.mapping_rows import MappingRow
from crmsync.store import Mapping as StoredMapping
from crmsync.urls import mask_password
from crmsync.web.keys import (
    CONFIG_KEY,
    MANAGED_KEY,
    STORE_KEY,
    ManagedTenant,
    error_response,
    json_response,
)
from crmsync.web.metakocka_rows import MappingsAnswer, MkReport, UnsyncedAnswer

#: the most ids one bulk call may carry
MAX_IDS: Final = 1000
PREFIX: Final = "/api/"
#: the metric's labels before the token is checked or for what matches no route/tenant
UNKNOWN: Final = "_unknown"
#: set on a request one replica forwards to another (which then never forwards it on)
FORWARDED_BY: Final = "X-Crmsync-Forwarded-By"
#: on a forwarded answer: the replica that ran the request
ANSWERED_BY: Final = "X-Crmsync-Replica"
#: a bulk sync of `MAX_IDS` records at Quo's 10/s takes minutes: no overall limit, but
#: the owner must connect at once and never go quiet for long
FORWARD_TIMEOUT: Final = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=900)

# Per process, never shown: the token and the presented credentials are compared as
# HMACs under this key, so both sides have the same length whatever was sent.
_COMPARE_KEY: Final = secrets.token_bytes(32)


@dataclass(frozen=True)
class ApiCall:
    """One checked request: its tenant, and the ids or query values it carries."""

    request: web.Request
    tenant: ManagedTenant
    ids: list[str] = field(default_factory=list)
    query: dict[str, str] = field(default_factory=dict)


ApiHandler = Callable[[ApiCall], Awaitable[web.Response]]


@dataclass(frozen=True)
class ApiRoute:
    """`METHOD /api/tenants/{t}/<path>`."""

    method: str
    path: str
    handler: ApiHandler
    #: the body is `{ids_field: [1..MAX_IDS strings]}`; None: no body is read
    ids_field: str | None = None
    #: the query parameters it takes (each at most once, non-empty)
    query: tuple[str, ...] = ()
    #: 409 unless the tenant has a `[tenants.metakocka]` link
    metakocka: bool = False

    @property
    def template(self) -> str:
        return f"/api/tenants/{{t}}/{self.path}"


ROUTES_KEY: Final[web.AppKey[tuple[ApiRoute, ...]]] = web.AppKey("crmsync_api_routes")


# -- handlers ---------------------------------------------------------------------------


async def sync_records(call: ApiCall) -> web.Response:
    """CRM → Quo now for the ids: the aggregate of `services/on_demand.py`."""
    with log_context.tenant(call.tenant.id):
        report = await call.tenant.sync_records(call.ids)
    return json_response(report)


async def mappings(call: ApiCall) -> web.Response:
    """The rows of `crmsync mappings` (all, or those of one CRM record id)."""
    store = call.request.app[STORE_KEY]
    tenant = call.tenant
    record_id = call.query.get("crmRecordId")
    found: list[StoredMapping] = []
    if record_id is None:
        found = [m async for m in store.mappings.iter_all(tenant.id, include_deleted=True)]
    else:
        for crm_object in tenant.config.object_types:
            mapping = await store.mappings.get(tenant.id, crm_object, record_id)
            if mapping is not None:
                found.append(mapping)
    return json_response({"mappings": [MappingRow.of(m) for m in found]})


async def metakocka_push(call: ApiCall) -> web.Response:
    """CRM person → Metakocka partner now: the aggregate, each result with `mkId`."""
    with log_context.tenant(call.tenant.id):
        results = await call.tenant.push(call.ids)
    return json_response(MkReport.of_push(results))


async def metakocka_pull(call: ApiCall) -> web.Response:
    """Metakocka partner → CRM person now: the aggregate, each with `crmRecordId`."""
    with log_context.tenant(call.tenant.id):
        results = await call.tenant.pull(call.ids)
    return json_response(MkReport.of_pull(results))


async def metakocka_unsynced(call: ApiCall) -> web.Response:
    """The partners discovered on documents and not paired yet."""
    return json_response(UnsyncedAnswer.of(await call.tenant.unsynced()))


async def metakocka_mappings(call: ApiCall) -> web.Response:
    """The person ⇄ partner pairs: all, or those of `crmRecordId` and/or `mkId`."""
    links = await call.tenant.mappings(
        crm_record_id=call.query.get("crmRecordId"), mk_id=call.query.get("mkId"))
    return json_response(MappingsAnswer.of(links))


ROUTES: Final[tuple[ApiRoute, ...]] = (
    ApiRoute("POST", "sync", sync_records, ids_field="crmRecordIds"),
    ApiRoute("GET", "mappings", mappings, query=("crmRecordId",)),
    ApiRoute("POST", "metakocka/push", metakocka_push, ids_field="crmRecordIds",
             metakocka=True),
    ApiRoute("POST", "metakocka/pull", metakocka_pull, ids_field="mkIds", metakocka=True),
    ApiRoute("GET", "metakocka/unsynced", metakocka_unsynced, metakocka=True),
    ApiRoute("GET", "metakocka/mappings", metakocka_mappings,
             query=("crmRecordId", "mkId"), metakocka=True),
)


def add_api_routes(app: web.Application, routes: Sequence[ApiRoute] = ROUTES) -> None:
    """Every `/api/…` request, any method, goes through `dispatch` (auth first)."""
    app[ROUTES_KEY] = tuple(routes)
    app.router.add_route("*", "/api", dispatch)
    app.router.add_route("*", "/api/{tail:.*}", dispatch)


# -- the checks, in order ----------------------------------------------------------------


class _Refused(Exception):  # noqa: N818 (an answer, not an error)
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class _Labels:
    tenant: str = UNKNOWN
    route: str = UNKNOWN


async def dispatch(request: web.Request) -> web.StreamResponse:
    labels = _Labels()
    status = 500
    try:
        response = await _answer(request, labels)
    except web.HTTPException as exc:  # e.g. 413 from reading a body over the cap
        status = exc.status
        raise
    else:
        status = response.status
    finally:
        metrics.api_requests.labels(labels.tenant, labels.route, str(status)).inc()
    return response


class _Forwarded(Exception):  # noqa: N818 (an answer, not an error)
    def __init__(self, response: web.Response) -> None:
        super().__init__("forwarded")
        self.response = response


async def _answer(request: web.Request, labels: _Labels) -> web.StreamResponse:
    try:
        call, route = await _check(request, labels)
    except _Refused as refused:
        response = error_response(refused.status, refused.message)
        response.headers.update(refused.headers)
        return response
    except _Forwarded as forwarded:
        return forwarded.response
    return await route.handler(call)


async def _check(request: web.Request, labels: _Labels) -> tuple[ApiCall, ApiRoute]:
    token = request.app[CONFIG_KEY]().http.admin_token
    if token is None:
        raise _Refused(404, "the management API is off (set http.admin_token)")
    if not authorised(request.headers.get("Authorization"), token.reveal()
                      if token.resolved else None):
        raise _Refused(401, "missing or wrong bearer token",
                       {"WWW-Authenticate": 'Bearer realm="crmsync"'})

    tenant_id, candidates = _paths(request)
    labels.route = candidates[0].template
    tenant = request.app[MANAGED_KEY](tenant_id)
    if tenant is None:
        await _elsewhere(request, tenant_id, labels)
        raise _Refused(404, "unknown tenant")
    labels.tenant = tenant.id
    route = _method(request, candidates)

    query = _query(request, route)
    ids = [] if route.ids_field is None else await _ids(request, route.ids_field)
    call = ApiCall(request, tenant, ids=ids, query=query)
    if route.metakocka and tenant.config.metakocka is None:
        raise _Refused(409, f"tenant {tenant.id} has no Metakocka link ([tenants.metakocka])")
    return call, route


async def _elsewhere(request: web.Request, tenant_id: str, labels: _Labels) -> None:
    """With replicas (a PostgreSQL state): a configured tenant another replica runs is
    forwarded there (`_Forwarded`), one no replica runs right now is 503 (its lease is
    being taken over: retry). 409 naming the replica where forwarding cannot be: it
    advertised no address, or the request was forwarded here already."""
    store = request.app[STORE_KEY]
    configured = any(t.id == tenant_id and t.enabled for t in request.app[CONFIG_KEY]().tenants)
    if store.backend != "postgresql" or not configured:
        return
    held = (await store.leases.current(now=await store.leases.clock())).get(tenant_id)
    if held is None:
        raise _Refused(503, f"tenant {tenant_id} is between replicas (its lease is being "
                            "taken over): retry shortly", {"Retry-After": "5"})
    labels.tenant = tenant_id
    owner = await store.leases.replica(held.holder)
    if owner is None or owner.api_url is None or FORWARDED_BY in request.headers:
        raise _Refused(409, f"tenant {tenant_id} runs on replica {held.holder}: send the "
                            "request to that replica")
    raise _Forwarded(await _forward(request, tenant_id, owner.replica_id, owner.api_url))


async def _forward(
    request: web.Request, tenant_id: str, replica: str, api_url: str
) -> web.Response:
    """The request as the replica that runs the tenant answers it: same method, path,
    query, body and credentials (it checks them again), marked as forwarded."""
    headers = {name: value for name in ("Authorization", "Content-Type")
               if (value := request.headers.get(name)) is not None}
    headers[FORWARDED_BY] = "1"
    url = api_url + request.path_qs
    try:
        body = await request.read()
        async with (
            aiohttp.ClientSession(timeout=FORWARD_TIMEOUT) as session,
            session.request(request.method, url, data=body, headers=headers) as answer,
        ):
            payload = await answer.read()
            status = answer.status
            content_type = answer.headers.get("Content-Type", "application/json")
            passed_on = {name: answer.headers[name] for name in ("Allow", "Retry-After")
                         if name in answer.headers}
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise _Refused(502, f"tenant {tenant_id} runs on replica {replica}, which did not "
                            f"answer at {mask_password(api_url)}: {type(exc).__name__}"
                       ) from None
    response = web.Response(status=status, body=payload,
                            headers={"Content-Type": content_type, **passed_on})
    response.headers[ANSWERED_BY] = replica
    return response


def authorised(header: str | None, token: str | None) -> bool:
    """Whether `header` is `Bearer <token>`; constant time in both values."""
    presented = b""
    if header is not None:
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() == "bearer":
            presented = credentials.strip().encode("utf-8", "surrogateescape")
    expected = b"" if token is None else token.encode("utf-8", "surrogateescape")
    same = hmac.compare_digest(_mac(presented), _mac(expected))
    # An empty token (or one a read-only load left unresolved) opens nothing.
    return same and bool(expected)


def _mac(value: bytes) -> bytes:
    return hmac.new(_COMPARE_KEY, value, hashlib.sha256).digest()


def _paths(request: web.Request) -> tuple[str, list[ApiRoute]]:
    """(tenant id, the routes of the path); 404 for a path no route has."""
    parts = request.path.removeprefix(PREFIX).split("/", 2)
    if len(parts) != 3 or parts[0] != "tenants" or not parts[1]:
        raise _Refused(404, "no such management API route")
    tenant_id, rest = parts[1], parts[2]
    candidates = [r for r in request.app[ROUTES_KEY] if r.path == rest]
    if not candidates:
        raise _Refused(404, "no such management API route")
    return tenant_id, candidates


def _method(request: web.Request, candidates: list[ApiRoute]) -> ApiRoute:
    """The route of the request's method; 405 if the path has none for it."""
    for route in candidates:
        if route.method == request.method:
            return route
    allowed = ", ".join(sorted({r.method for r in candidates}))
    raise _Refused(405, f"method not allowed (allowed: {allowed})", {"Allow": allowed})


def _query(request: web.Request, route: ApiRoute) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in request.query.items():
        if name not in route.query:
            takes = ", ".join(route.query) or "none"
            raise _Refused(400, f"unknown query parameter {name!r} (takes: {takes})")
        if name in values:
            raise _Refused(400, f"query parameter {name!r} given more than once")
        if not value:
            raise _Refused(400, f"query parameter {name!r} is empty")
        values[name] = value
    return values


async def _ids(request: web.Request, name: str) -> list[str]:
    """`{name: [...]}`: 1 to MAX_IDS non-empty strings; 400 with one line otherwise."""
    shape = f'the body must be JSON {{"{name}": ["<id>", ...]}}'
    body = await request.read()
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise _Refused(400, f"{shape}: not JSON") from None
    if not isinstance(decoded, dict) or set(decoded) != {name}:
        raise _Refused(400, shape)
    ids = decoded[name]
    if not isinstance(ids, list):
        raise _Refused(400, f"{shape}: {name} is not a list")
    if not 1 <= len(ids) <= MAX_IDS:
        raise _Refused(400, f"{name} must list 1 to {MAX_IDS} ids, got {len(ids)}")
    for index, value in enumerate(ids):
        if not isinstance(value, str) or not value.strip():
            raise _Refused(400, f"{name}[{index}] must be a non-empty string")
    return ids
