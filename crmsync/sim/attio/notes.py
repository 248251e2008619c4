"""Note routes: create, list, get, delete. Attio has no way to update a note.

Strict like the real API: `format` is `plaintext` or `markdown`, the parent record must
exist (404), and a backdated `created_at` may not be before 1970 or in the future.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from crmsync.sim.attio.errors import (
    JSONObject,
    data_object,
    json_response,
    not_found,
    query_int,
    read_json_object,
    record_not_found,
    validation_error,
)
from crmsync.sim.attio.model import format_timestamp
from crmsync.sim.attio.query import parse_timestamp
from crmsync.sim.attio.state import ATTIO_SIM_KEY, AttioSim

NOTE_FIELDS = frozenset(
    {"parent_object", "parent_record_id", "title", "format", "content", "created_at",
     "meeting_id"}
)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MARKDOWN_MARKS = re.compile(r"(\*\*|__|~~|==|^#{1,3} |^\s*[-*+] |`)", re.MULTILINE)
_MARKDOWN_LINK = re.compile(r"\[([^\]]*)\]\(([^)]*)\)")

routes = web.RouteTableDef()


@routes.post("/v2/notes")
async def create_note(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    data = data_object(await read_json_object(request))
    unknown = set(data) - NOTE_FIELDS
    if unknown:
        raise validation_error(f"Unknown note fields: {', '.join(sorted(unknown))}.")
    for name in ("parent_object", "parent_record_id", "title", "content"):
        if not isinstance(data.get(name), str):
            raise validation_error(f'"{name}" is required and must be a string.')
    if data.get("format") not in ("plaintext", "markdown"):
        raise validation_error('"format" must be "plaintext" or "markdown".')
    if data.get("meeting_id") is not None:
        raise not_found(f'Meeting with ID "{data["meeting_id"]}" not found.')
    slug = _parent_slug(sim, data["parent_object"])
    if data["parent_record_id"] not in sim.store(slug):
        raise record_not_found(data["parent_record_id"])
    created_at = _created_at(sim, data.get("created_at"))
    note_id = sim.new_id()
    markdown = data["format"] == "markdown"
    note: JSONObject = {
        "id": {"workspace_id": sim.workspace.workspace_id, "note_id": note_id},
        "parent_object": slug,
        "parent_record_id": data["parent_record_id"],
        "title": data["title"],
        "meeting_id": None,
        "content_plaintext": _plaintext(data["content"]) if markdown else data["content"],
        "content_markdown": data["content"],
        "tags": [],
        "created_by_actor": sim.api_actor(),
        "created_at": format_timestamp(created_at),
    }
    sim.notes[note_id] = note
    return json_response({"data": note})


@routes.get("/v2/notes")
async def list_notes(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    limit = query_int(request, "limit", 10, maximum=50)
    offset = query_int(request, "offset", 0, maximum=2**31)
    parent_object = request.query.get("parent_object")
    parent_record_id = request.query.get("parent_record_id")
    slug = _parent_slug(sim, parent_object) if parent_object is not None else None
    notes = [
        n for n in sim.notes.values()
        if (slug is None or n["parent_object"] == slug)
        and (parent_record_id is None or n["parent_record_id"] == parent_record_id)
    ]
    return json_response({"data": notes[offset:offset + limit]})


@routes.get("/v2/notes/{note_id}")
async def get_note(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    return json_response({"data": _note(sim, request.match_info["note_id"])})


@routes.delete("/v2/notes/{note_id}")
async def delete_note(request: web.Request) -> web.Response:
    sim = request.app[ATTIO_SIM_KEY]
    note = _note(sim, request.match_info["note_id"])
    del sim.notes[note["id"]["note_id"]]
    return json_response({})


def _note(sim: AttioSim, note_id: str) -> JSONObject:
    note = sim.notes.get(note_id)
    if note is None:
        raise not_found(f'Note with ID "{note_id}" not found.')
    return note


def _parent_slug(sim: AttioSim, given: str) -> str:
    slug = sim.workspace.object_slug(given)
    if slug is None:
        raise not_found(f'Object with slug/ID "{given}" not found.')
    return slug


def _created_at(sim: AttioSim, value: Any) -> datetime:
    if value is None:
        return sim.now()
    moment = parse_timestamp(value)
    if moment is None:
        raise validation_error('"created_at" must be an ISO 8601 timestamp with a timezone.')
    if moment < EPOCH or moment > sim.now():
        raise validation_error('"created_at" may not be before 1970 or in the future.')
    return moment


def _plaintext(markdown: str) -> str:
    """Roughly what Attio's renderer leaves of a markdown note as plain text."""
    return _MARKDOWN_MARKS.sub("", _MARKDOWN_LINK.sub(r"\1", markdown))
