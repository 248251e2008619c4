"""End to end: `crmsync inbox replay EVENT_ID` applies a stored event in the foreground.

Replay without `--no-process` does not wait for a daemon: the CLI marks the event
pending and applies it at once with the tenant's own inbox processor
(`crmsync.cli.inbox.drain_inbox`), against the same simulators the daemon used.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.live import TENANT, inbox, live_env, notes_of

pytestmark = pytest.mark.slow

PEOPLE = 20
NEW_PHONE = "+12025550187"  # valid, and no seeded person has it


async def test_replay_applies_the_event_once_with_the_daemon_stopped(tmp_path: Path) -> None:
    """A text from a number the CRM did not know yet is logged once the number is added.

    1. daemon live with 20 people synced
    2. a Quo SMS from a number no person has → signed `message.received` → 200; the
       daemon marks it processed without a note (nobody to log it on)
    3. SIGTERM (exit 0): from here on no daemon runs
    4. the number is added to one person in Attio (no CRM webhook: nobody listens)
    5. `crmsync inbox replay --tenant acme EVENT_ID` in a subprocess
    6. the same replay once more
    Result: each replay reports the event marked pending and 1 event processed; the
    person has exactly one note (the SMS's text and `quo:<message id>`), nobody else
    has one; the inbox holds the event once, processed.
    """
    async with live_env(tmp_path, people=PEOPLE, quo_webhooks="legacy") as env:
        e2e = env.e2e
        phones = {p for r in env.attio.people for p in env.attio.person_phones(r.record_id)}
        assert NEW_PHONE not in phones
        async with env.daemon() as daemon:
            message = env.quo.add_message(NEW_PHONE, "Please call me back about the renewal")
            results = await env.quo.deliver_event(
                "message.received", env.quo.workspace.message_event_object(message)
            )
            assert [r.status for r in results] == [200], results
            event_id = results[0].event.id

            async def processed() -> bool:
                rows = [e for e in await inbox(e2e) if e["eventId"] == event_id]
                return len(rows) == 1 and rows[0]["state"] == "processed"

            await daemon.wait_for(processed, message="event processed by the daemon")
            assert env.attio.notes == {}

        assert not daemon.running
        person = next(iter(env.attio.people)).record_id
        env.attio.update_person(
            person, phones=[*env.attio.person_phones(person), NEW_PHONE], notify=False
        )

        for _ in range(2):
            result = await e2e.cli("inbox", "replay", "--tenant", TENANT, event_id)
            assert result.code == 0, result.describe()
            assert result.out.splitlines() == [
                f"{TENANT}: 1 webhook event marked pending for replay",
                f"{TENANT}: processed 1 webhook event",
            ], result.describe()
            (note,) = notes_of(env.attio, person)
            assert "Please call me back about the renewal" in note["content_markdown"]
            assert f"quo:{message['id']}" in note["content_markdown"]
            assert len(env.attio.notes) == 1  # nobody else got one

        (event,) = [e for e in await inbox(e2e) if e["eventId"] == event_id]
        assert event["state"] == "processed", event
        assert len(await inbox(e2e)) == 1
