"""HubSpot notes: the activity crmsync logs on a contact, and finding them again.

A note is an engagement object (`/crm/v3/objects/notes`) with an HTML body
(`hs_note_body`, up to 65,536 characters, from `html_notes.note_html`) and a time
(`hs_timestamp`), associated with its contact when it is created (type 202). The
contact's notes are listed through its associations (v4, up to 500 a page), their
bodies read by batch (100 at a time).
"""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, datetime
from typing import Final

from crmsync.adapters.base import NoteInput
from crmsync.adapters.errors import CrmDecodeError, CrmNotFoundError
from crmsync.adapters.html_notes import note_html
from crmsync.adapters.hubspot_companies import next_after, results_of
from crmsync.adapters.hubspot_values import properties_of, record_id
from crmsync.net.transport import Transport

NOTES: Final = "/crm/v3/objects/notes"
NOTES_PAGE: Final = 500  # the most associations one page lists
BATCH: Final = 100  # the most ids one object batch read takes
NOTE_TO_CONTACT: Final = 202  # HUBSPOT_DEFINED note → contact


class Notes:
    """Writes, deletes and finds a contact's notes."""

    def __init__(self, http: Transport) -> None:
        self._http = http

    async def write(self, note: NoteInput) -> str:
        when = note.created_at or datetime.now(UTC).isoformat(timespec="milliseconds")
        # Not retried once sent: the activity logger checks for its marker instead.
        response = await self._http.call("POST", NOTES, json={
            "properties": {"hs_timestamp": when,
                           "hs_note_body": note_html(note.title, note.markdown)},
            "associations": [{"to": {"id": note.person_id}, "types": [{
                "associationCategory": "HUBSPOT_DEFINED",
                "associationTypeId": NOTE_TO_CONTACT}]}],
        })
        note_id = record_id(response)
        if note_id is None:
            raise CrmDecodeError("unexpected response: no note 'id'", method="POST",
                                 route=NOTES)
        return note_id

    async def delete(self, note_id: str) -> None:
        with contextlib.suppress(CrmNotFoundError):  # already gone: the goal
            await self._http.call("DELETE", f"{NOTES}/{note_id}", route=f"{NOTES}/{{id}}")

    async def find(self, contact_id: str, marker: str) -> list[str]:
        """Ids of the contact's notes whose body contains `marker` (not as a prefix).

        Used after a crash between "about to write a note" and "note id saved", so it
        reads every note of the contact; that is rare and contacts have few notes.
        """
        pattern = re.compile(re.escape(marker) + r"(?![\w-])")
        note_ids = await self._note_ids(contact_id)
        found: list[str] = []
        path = f"{NOTES}/batch/read"
        for start in range(0, len(note_ids), BATCH):
            response = await self._http.call("POST", path, read=True, json={
                "properties": ["hs_note_body"],
                "inputs": [{"id": i} for i in note_ids[start:start + BATCH]],
            })
            for note in results_of(response, "POST", path):
                content = properties_of(note).get("hs_note_body")
                note_id = record_id(note)
                if note_id and isinstance(content, str) and pattern.search(content):
                    found.append(note_id)
        return found

    async def _note_ids(self, contact_id: str) -> list[str]:
        path = f"/crm/v4/objects/contacts/{contact_id}/associations/notes"
        route = "/crm/v4/objects/contacts/{id}/associations/notes"
        ids: list[str] = []
        after: str | None = None
        while True:
            params = [("limit", str(NOTES_PAGE))] + ([("after", after)] if after else [])
            response = await self._http.call("GET", path, route=route, params=params)
            for link in results_of(response, "GET", route):
                if (note_id := record_id({"id": link.get("toObjectId")})) is not None:
                    ids.append(note_id)
            following = next_after(response)
            if following is None or following == after:
                return list(dict.fromkeys(ids))
            after = following
