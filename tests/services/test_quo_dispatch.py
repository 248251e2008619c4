"""`QuoEventRouter`: contact events to the contact edits, the rest to the activity
logger, whatever the spelling of the type; and the tenant runtime wires it in."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from crmsync.services.quo_dispatch import QuoEventRouter


@dataclass
class Recorder:
    name: str
    seen: list[tuple[str, bytes]] = field(default_factory=list)

    async def handle(self, event_type: str, body: bytes) -> str:
        self.seen.append((event_type, body))
        return self.name


@pytest.mark.parametrize(("event_type", "service"), [
    ("contact.updated", "contacts"), ("contact.deleted", "contacts"),
    ("message.received", "activity"), ("call.completed", "activity"),
    ("callSummary", "activity"), ("call.voicemail.completed", "activity"),
    ("task.created", "activity"),
])
async def test_each_event_goes_to_one_service(event_type: str, service: str) -> None:
    contacts, activity = Recorder("contacts"), Recorder("activity")
    router = QuoEventRouter(contacts=contacts, activity=activity)
    assert await router.handle(event_type, b"{}") == service
    assert len(contacts.seen) + len(activity.seen) == 1
