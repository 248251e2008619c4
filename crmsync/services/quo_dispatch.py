"""Which service applies a stored Quo event: contact events or activity.

`contact.updated` / `contact.deleted` go to the contact edits (`contact_edits.py`);
everything else (messages, calls and their artefacts) to the activity logger. The
type is the inbox row's, else the envelope's (both systems; legacy spellings such as
`callSummary` are normalised by `quo/envelope.py`).
"""

from __future__ import annotations

from typing import Protocol

from crmsync.quo.envelope import normalise_type
from crmsync.services.contact_edits import CONTACT_EVENTS


class QuoEventService(Protocol):
    async def handle(self, event_type: str, body: bytes) -> str: ...


class QuoEventRouter:
    """The inbox processor's one `QuoEventHandler` for a tenant."""

    def __init__(self, *, contacts: QuoEventService, activity: QuoEventService) -> None:
        self._contacts = contacts
        self._activity = activity

    async def handle(self, event_type: str, body: bytes) -> str:
        if normalise_type(event_type) in CONTACT_EVENTS:
            return await self._contacts.handle(event_type, body)
        return await self._activity.handle(event_type, body)
