"""v2 person routes: list (cursor paging, sort, updated_since/until, ids), get, create,
PATCH, DELETE. Deleted persons are never listed and are a 404 on every route."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from crmsync.sim.pipedrive import query
from crmsync.sim.pipedrive.errors import invalid, not_found, ok, path_id, read_object
from crmsync.sim.pipedrive.model import Person
from crmsync.sim.pipedrive.people import parse_fields
from crmsync.sim.pipedrive.state import PIPEDRIVE_SIM_KEY, PipedriveSim
from crmsync.sim.pipedrive.store import SortBy

routes = web.RouteTableDef()

LIST_PARAMS = frozenset({
    "limit", "cursor", "updated_since", "updated_until", "sort_by", "sort_direction",
    "ids", "owner_id", "org_id", "deal_id", "filter_id", "include_fields", "custom_fields",
})
#: what a cursor is bound to: everything that decides which persons come in which order
BOUND = ("updated_since", "updated_until", "sort_by", "sort_direction", "ids", "owner_id",
         "org_id", "deal_id", "filter_id")
SORTS: tuple[SortBy, ...] = ("id", "update_time", "add_time")
MAX_LIMIT = 500


@routes.get("/api/v2/persons")
async def list_persons(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    query.check_known(request, LIST_PARAMS, strict=sim.config.reject_unknown_fields)
    limit = query.int_param(request, "limit", 100, low=1, high=MAX_LIMIT)
    sort_by = query.choice(request, "sort_by", SORTS, "id")
    descending = query.choice(request, "sort_direction", ("asc", "desc"), "asc") == "desc"
    since = query.rfc3339(request, "updated_since")
    until = query.rfc3339(request, "updated_until")
    ids = query.id_list(request, "ids")
    owner_id = query.optional_int(request, "owner_id")
    org_id = query.optional_int(request, "org_id")
    for unsupported in ("deal_id", "filter_id"):
        if query.optional_int(request, unsupported) is not None:
            raise invalid(unsupported, "no such item in this simulated company")
    bound_to = query.binding(request, BOUND)
    after = query.decode_cursor(request, bound_to, BOUND)
    wanted = None if ids is None else set(ids)

    def keep(person: Person) -> bool:
        return (
            (wanted is None or person.id in wanted)
            and (since is None or person.update_time >= since)
            and (until is None or person.update_time < until)
            and (owner_id is None or person.owner_id == owner_id)
            and (org_id is None or person.org_id == org_id)
        )

    key_length = 1 if sort_by == "id" else 2
    if after is not None and len(after) != key_length:
        raise invalid("cursor", "not a valid cursor")
    found, more = sim.persons.page(
        sort_by, descending, None if after is None else tuple(after), limit, keep)
    next_cursor = None
    if more and found:
        last = found[-1]
        key = (last.id,) if sort_by == "id" else (_seconds(last, sort_by), last.id)
        next_cursor = query.encode_cursor(bound_to, key)
    return ok([p.render() for p in found], {"next_cursor": next_cursor})


@routes.get("/api/v2/persons/{id}")
async def get_person(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    return ok(_person(sim, request).render())


@routes.post("/api/v2/persons")
async def create_person(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    changes = parse_fields(
        await read_object(request), creating=True, strict=sim.config.reject_unknown_fields,
        org_exists=lambda i: i in sim.orgs, parse_time=_body_time,
    )
    return ok(sim.create(changes, source="api").render())


@routes.patch("/api/v2/persons/{id}")
async def update_person(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    person = _person(sim, request)
    changes = parse_fields(
        await read_object(request), creating=False, strict=sim.config.reject_unknown_fields,
        org_exists=lambda i: i in sim.orgs,
    )
    sim.change(person, changes, source="api")
    return ok(person.render())


@routes.delete("/api/v2/persons/{id}")
async def delete_person(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    person = _person(sim, request)
    sim.remove(person, source="api")
    return ok({"id": person.id})


def _person(sim: PipedriveSim, request: web.Request) -> Person:
    person = sim.persons.live(path_id(request))
    if person is None:
        raise not_found("Person")
    return person


def _seconds(person: Person, sort_by: SortBy) -> int:
    moment = person.add_time if sort_by == "add_time" else person.update_time
    return int(moment.timestamp())


def _body_time(raw: str) -> datetime:
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise invalid("add_time", "must be an RFC 3339 date-time") from None
    if moment.tzinfo is None:
        raise invalid("add_time", "must carry a time zone")
    return moment.astimezone(UTC).replace(microsecond=0)
