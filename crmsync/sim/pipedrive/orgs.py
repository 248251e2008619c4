"""v2 organization routes (list by ids or all with a cursor, get, create) and v1 users/me.

`ids` takes at most 100; ids that do not exist are silently left out, as Pipedrive does.
"""

from __future__ import annotations

from aiohttp import web

from crmsync.sim.pipedrive import query
from crmsync.sim.pipedrive.errors import invalid, not_found, ok, only, path_id, read_object
from crmsync.sim.pipedrive.model import Organization
from crmsync.sim.pipedrive.state import PIPEDRIVE_SIM_KEY

routes = web.RouteTableDef()

LIST_PARAMS = frozenset({"limit", "cursor", "ids", "sort_by", "sort_direction",
                         "owner_id", "filter_id", "updated_since", "updated_until",
                         "include_fields", "custom_fields"})
BOUND = ("ids", "sort_by", "sort_direction", "owner_id", "filter_id", "updated_since",
         "updated_until")
ORG_FIELDS = frozenset({"name", "owner_id", "visible_to", "label_ids", "address",
                        "custom_fields", "add_time"})


@routes.get("/api/v2/organizations")
async def list_orgs(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    query.check_known(request, LIST_PARAMS, strict=sim.config.reject_unknown_fields)
    limit = query.int_param(request, "limit", 100, low=1, high=500)
    query.choice(request, "sort_by", ("id", "update_time", "add_time"), "id")
    descending = query.choice(request, "sort_direction", ("asc", "desc"), "asc") == "desc"
    ids = query.id_list(request, "ids")
    since = query.rfc3339(request, "updated_since")
    until = query.rfc3339(request, "updated_until")
    bound_to = query.binding(request, BOUND)
    after = query.decode_cursor(request, bound_to, BOUND)
    # Seeded and created organizations never change, so id order is also time order.
    ordered = sorted(sim.orgs.values(), key=lambda o: o.id, reverse=descending)
    kept = [
        o for o in ordered
        if (ids is None or o.id in ids)
        and (since is None or o.add_time >= since)
        and (until is None or o.add_time < until)
        and (after is None or (o.id < after[0] if descending else o.id > after[0]))
    ]
    page = kept[:limit]
    more = len(kept) > limit
    next_cursor = query.encode_cursor(bound_to, (page[-1].id,)) if more and page else None
    return ok([o.render() for o in page], {"next_cursor": next_cursor})


@routes.get("/api/v2/organizations/{id}")
async def get_org(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    org = sim.orgs.get(path_id(request))
    if org is None:
        raise not_found("Organization")
    return ok(org.render())


@routes.post("/api/v2/organizations")
async def create_org(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    body = await read_object(request)
    only(body, ORG_FIELDS, strict=sim.config.reject_unknown_fields)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise invalid("name", "is required and must be a non-empty string")
    org = Organization(sim.next_id("org"), name, sim.now(), sim.config.user_id)
    sim.orgs[org.id] = org
    return ok(org.render())


@routes.get("/v1/users/me")
async def users_me(request: web.Request) -> web.Response:
    return ok(request.app[PIPEDRIVE_SIM_KEY].user())
