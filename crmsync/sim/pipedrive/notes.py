"""v1 note routes: create, list (start/limit paging), get, update, delete.

Strict like the real API: `content` must not be empty; one of `person_id|org_id|deal_id|
lead_id|project_id` is required and must exist (deals, leads and projects do not exist
here); a person that is deleted cannot get notes; `add_time` is UTC
`YYYY-MM-DD HH:MM:SS`; `user_id` (the author) can only be the token's user. Bodies may
be JSON or form-encoded, as v1 accepts both. `data` of an empty list is null.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from aiohttp import web

from crmsync.sim.pipedrive import query
from crmsync.sim.pipedrive.errors import (
    PipedriveError,
    invalid,
    not_found,
    ok,
    only,
    read_object,
)
from crmsync.sim.pipedrive.model import Note
from crmsync.sim.pipedrive.state import PIPEDRIVE_SIM_KEY, PipedriveSim

routes = web.RouteTableDef()

FLAGS = ("pinned_to_person_flag", "pinned_to_deal_flag", "pinned_to_organization_flag",
         "pinned_to_lead_flag", "pinned_to_project_flag")
NOTE_FIELDS = frozenset({"content", "person_id", "org_id", "deal_id", "lead_id",
                         "project_id", "user_id", "add_time", *FLAGS})
LIST_PARAMS = frozenset({"person_id", "org_id", "deal_id", "lead_id", "project_id",
                         "user_id", "start", "limit", "sort", "start_date", "end_date",
                         "updated_since", *FLAGS})
SORT_FIELDS = ("id", "add_time", "update_time")
V1_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


@routes.post("/v1/notes")
async def create_note(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    body = await _body(request)
    only(body, NOTE_FIELDS, strict=sim.config.reject_unknown_fields)
    content = _content(body)
    for missing in ("deal_id", "lead_id", "project_id"):
        if body.get(missing) not in (None, ""):
            raise invalid(missing, f"{missing.removesuffix('_id')} {body[missing]} not found")
    person_id, org_id = _ref(body, "person_id"), _ref(body, "org_id")
    if person_id is None and org_id is None:
        raise PipedriveError(400, "Validation failed: one of person_id, org_id, deal_id, "
                                  "lead_id or project_id is required")
    if person_id is not None and sim.persons.live(person_id) is None:
        raise invalid("person_id", f"person {person_id} not found")
    if org_id is not None and org_id not in sim.orgs:
        raise invalid("org_id", f"organization {org_id} not found")
    _check_user(sim, body)
    now = sim.now()
    add_time = _v1_time(body["add_time"]) if body.get("add_time") not in (None, "") else now
    note = Note(sim.next_id("note"), content, person_id, org_id, sim.config.user_id,
                add_time, now, pinned_to_person_flag=_flag(body, "pinned_to_person_flag"))
    sim.notes[note.id] = note
    return ok(sim.note_json(note))


@routes.get("/v1/notes")
async def list_notes(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    query.check_known(request, LIST_PARAMS, strict=sim.config.reject_unknown_fields)
    start = query.int_param(request, "start", 0)
    limit = query.int_param(request, "limit", 100, low=1, high=500)
    person_id = query.optional_int(request, "person_id")
    org_id = query.optional_int(request, "org_id")
    notes = [n for n in sim.notes.values()
             if (person_id is None or n.person_id == person_id)
             and (org_id is None or n.org_id == org_id)]
    for field, descending in reversed(_sort(request.query.get("sort"))):
        notes.sort(key=attrgetter(field), reverse=descending)
    page = notes[start:start + limit]
    more = start + limit < len(notes)
    pagination: dict[str, Any] = {"start": start, "limit": limit,
                                  "more_items_in_collection": more}
    if more:
        pagination["next_start"] = start + limit
    return ok([sim.note_json(n) for n in page] or None, {"pagination": pagination})


@routes.get("/v1/notes/{id}")
async def get_note(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    return ok(sim.note_json(_note(sim, request)))


@routes.put("/v1/notes/{id}")
async def update_note(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    note = _note(sim, request)
    body = await _body(request)
    only(body, NOTE_FIELDS, strict=sim.config.reject_unknown_fields)
    if "content" in body:
        note.content = _content(body)
    if body.get("add_time") not in (None, ""):
        note.add_time = _v1_time(body["add_time"])
    note.update_time = sim.now()
    return ok(sim.note_json(note))


@routes.delete("/v1/notes/{id}")
async def delete_note(request: web.Request) -> web.Response:
    sim = request.app[PIPEDRIVE_SIM_KEY]
    del sim.notes[_note(sim, request).id]
    return ok(True)


def _note(sim: PipedriveSim, request: web.Request) -> Note:
    raw = request.match_info["id"]
    note = sim.notes.get(int(raw)) if raw.isdigit() else None
    if note is None:
        raise not_found("Note")
    return note


async def _body(request: web.Request) -> dict[str, Any]:
    if request.content_type == "application/x-www-form-urlencoded":
        return dict((await request.post()).items())
    return await read_object(request)


def _content(body: dict[str, Any]) -> str:
    content = body.get("content")
    if not isinstance(content, str) or not content.strip():
        raise invalid("content", "is required and must not be empty")
    return content


def _ref(body: dict[str, Any], name: str) -> int | None:
    raw = body.get(name)
    if raw in (None, ""):
        return None
    if isinstance(raw, str) and raw.isdigit():
        return int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise invalid(name, "must be an integer")
    return raw


def _check_user(sim: PipedriveSim, body: dict[str, Any]) -> None:
    user = _ref(body, "user_id")
    if user is not None and user != sim.config.user_id:
        raise invalid("user_id", f"user {user} not found or not allowed to author notes")


def _flag(body: dict[str, Any], name: str) -> bool:
    return body.get(name) in (True, 1, "1", "true")


def _v1_time(raw: object) -> datetime:
    if not isinstance(raw, str) or not V1_TIME.fullmatch(raw):
        raise invalid("add_time", "must be UTC in the format YYYY-MM-DD HH:MM:SS")
    try:
        return datetime.strptime(raw, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise invalid("add_time", "is not a valid date-time") from None


def _sort(raw: str | None) -> list[tuple[str, bool]]:
    """`add_time DESC, id ASC` -> [("add_time", True), ("id", False)]; default by id."""
    if not raw:
        return [("id", False)]
    result = []
    for part in raw.split(","):
        words = part.split()
        if not words or words[0] not in SORT_FIELDS or len(words) > 2 or (
            len(words) == 2 and words[1].upper() not in ("ASC", "DESC")
        ):
            raise invalid("sort", f"must be like 'add_time DESC' with fields {SORT_FIELDS}")
        result.append((words[0], len(words) == 2 and words[1].upper() == "DESC"))
    return result
