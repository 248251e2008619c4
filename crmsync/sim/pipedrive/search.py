"""v2 search routes: persons (by phone, email, name) and organizations (by name).

`term` needs 2 characters, 1 with `exact_match=true`. Phone matching compares digits
only: the term's digits equal a stored phone's digits (exact) or are found inside them
(not exact); formatting never matters, but a country code does: `+1 415 555 0134`
(digits `14155550134`) does not find a phone typed `(415) 555-0134`. Email and name
matching ignore case. Items come by score (exact 1.0) then id, in pages of `limit`
with a cursor bound to the search. Search has its own burst window (`limits.py`).
"""

from __future__ import annotations

from aiohttp import web

from crmsync.sim.pipedrive import query
from crmsync.sim.pipedrive.errors import invalid, ok
from crmsync.sim.pipedrive.model import JSONObject, Organization, Person
from crmsync.sim.pipedrive.state import PIPEDRIVE_SIM_KEY, PipedriveSim

routes = web.RouteTableDef()

PERSON_FIELDS = ("custom_fields", "email", "notes", "phone", "name")
ORG_FIELDS = ("address", "custom_fields", "notes", "name")
PARAMS = frozenset({"term", "fields", "exact_match", "organization_id", "person_id",
                    "include_fields", "limit", "cursor"})
BOUND = ("term", "fields", "exact_match", "organization_id")


@routes.get("/api/v2/persons/search")
async def search_persons(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    term, fields, exact = _search_params(request, sim, PERSON_FIELDS)
    org_id = query.optional_int(request, "organization_id")
    scored = [
        (score, person) for person in sim.persons.all_live()
        if (org_id is None or person.org_id == org_id)
        and (score := _person_score(person, term, fields, exact)) > 0
    ]
    scored.sort(key=lambda pair: (-pair[0], pair[1].id))
    return _page(request, [(s, _person_item(sim, p)) for s, p in scored])


@routes.get("/api/v2/organizations/search")
async def search_orgs(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    term, fields, exact = _search_params(request, sim, ORG_FIELDS)
    scored = [(s, org) for org in sim.orgs.values()
              if "name" in fields and (s := _text_score(org.name, term, exact)) > 0]
    scored.sort(key=lambda pair: (-pair[0], pair[1].id))
    return _page(request, [(s, _org_item(o)) for s, o in scored])


def _search_params(request: web.Request, sim: PipedriveSim, allowed: tuple[str, ...]
                   ) -> tuple[str, set[str], bool]:
    query.check_known(request, PARAMS, strict=sim.config.reject_unknown_fields)
    exact = query.bool_param(request, "exact_match", False)
    term = (request.query.get("term") or "").strip()
    if not term:
        raise invalid("term", "is required")
    if len(term) < (1 if exact else 2):
        raise invalid("term", "must be at least 2 characters long (1 with exact_match)")
    raw_fields = request.query.get("fields")
    fields = set(allowed) if raw_fields is None else {f.strip() for f in raw_fields.split(",")}
    unknown = sorted(fields - set(allowed))
    if unknown or not fields:
        raise invalid("fields", f"must be a comma-separated subset of {', '.join(allowed)}")
    return term, fields, exact


def _page(request: web.Request, scored: list[tuple[float, JSONObject]]) -> web.Response:
    limit = query.int_param(request, "limit", 100, low=1, high=500)
    bound_to = query.binding(request, BOUND)
    after = query.decode_cursor(request, bound_to, BOUND)
    start = 0 if after is None else after[0]
    page = scored[start:start + limit]
    more = start + limit < len(scored)
    next_cursor = query.encode_cursor(bound_to, (start + limit,)) if more else None
    items = [{"result_score": score, "item": item} for score, item in page]
    return ok({"items": items}, {"next_cursor": next_cursor})


def _person_score(person: Person, term: str, fields: set[str], exact: bool) -> float:
    scores = [0.0]
    if "name" in fields:
        scores.append(_text_score(person.name, term, exact))
    if "email" in fields:
        scores += [_text_score(e, term, exact) for e in person.email_values()]
    if "phone" in fields:
        scores += [_digit_score(p, term, exact) for p in person.phone_values()]
    return max(scores)


def _text_score(value: str, term: str, exact: bool) -> float:
    value, term = value.casefold(), term.casefold()
    if value == term:
        return 1.0
    if not exact and term in value:
        return round(len(term) / len(value), 3)
    return 0.0


def _digit_score(phone: str, term: str, exact: bool) -> float:
    wanted, stored = query.digits(term), query.digits(phone)
    if not wanted or not stored:
        return 0.0
    if wanted == stored:
        return 1.0
    if not exact and wanted in stored:
        return round(len(wanted) / len(stored), 3)
    return 0.0


def _person_item(sim: PipedriveSim, person: Person) -> JSONObject:
    org = None if person.org_id is None else sim.orgs.get(person.org_id)
    return {
        "id": person.id,
        "type": "person",
        "name": person.name,
        "phones": person.phone_values(),
        "emails": person.email_values(),
        "visible_to": 3,
        "owner": {"id": person.owner_id},
        "organization": None if org is None else {"id": org.id, "name": org.name,
                                                  "address": None},
        "custom_fields": [],
        "notes": [],
        "update_time": person.render()["update_time"],
    }


def _org_item(org: Organization) -> JSONObject:
    return {"id": org.id, "type": "organization", "name": org.name, "address": None,
            "visible_to": 3, "owner": {"id": org.owner_id}, "custom_fields": [], "notes": []}
