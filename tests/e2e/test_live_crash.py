"""End to end: the daemon is SIGKILLed after acknowledging a webhook, before applying it.

The 2xx promises the event is durably stored (INTERFACE §4). Processing is held back
by making every Attio API call fail (the CRM change handler re-fetches the record,
and that read is retried with backoff while the event stays claimed); the daemon is
then killed
without any chance to clean up, the CRM recovers, and a new daemon must apply the
stored event from its inbox, exactly once.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from support.e2e import E2E, assert_contact_matches, expected_contact
from support.live import contact_of, inbox, live_env, wait_until

from crmsync.store.store import BUSY_TIMEOUT_MS

pytestmark = pytest.mark.slow

PEOPLE = 20
ALWAYS = 1_000_000  # Attio fails this many requests: "until cleared"


async def crm_events(e2e: E2E) -> list[dict[str, Any]]:
    """The inbox's CRM events (Quo's `contact.updated` echoes of the sync's own
    writes are there too, and are not what this test is about)."""
    return [event for event in await inbox(e2e) if event["source"] == "crm"]


async def test_acknowledged_change_survives_sigkill(tmp_path: Path) -> None:
    """1. daemon live with 20 people synced
    2. Attio starts answering 500 to every API call (webhooks still go out)
    3. a person's job title changes → signed `record.updated` → the daemon answers 200
    4. the daemon claims the event; its record fetch fails and is being retried
    5. SIGKILL (no shutdown, no final commit): the event is left `processing`
       (claimed by a dead process) or, if its retries ran out first, `pending`
    6. Attio recovers; the daemon is started again
    Result: the change reaches Quo; `crmsync inbox` shows the event once, processed;
    one Quo PATCH in total and no other contact write; the restarted daemon stops
    cleanly on SIGTERM.
    """
    async with live_env(tmp_path, people=PEOPLE) as env:
        e2e = env.e2e
        first = await env.start()
        e2e.quo.reset_stats()
        env.attio.faults.fail_next = ALWAYS

        person = next(r.record_id for r in env.attio.people)
        env.attio.update_person(person, job_title="Survivor of SIGKILL")
        await env.attio.deliver_pending()  # waits for the delivery (and any retry)
        (attempt,) = [a for a in env.attio.deliverer.attempts if a.record_id == person]
        assert attempt.status == 200, attempt

        # The processor claimed the event and its record fetch is failing (the
        # adapter retries reads with backoff, so the claim lasts seconds).
        await first.wait_for(lambda: env.attio.stats.injected_failures >= 1,
                             message="a failed record fetch")
        (stored,) = await crm_events(e2e)
        # Normally still `processing`; `pending` if the retries were already exhausted.
        assert stored["state"] in ("processing", "pending") and stored["attempts"] >= 1, stored
        assert e2e.contact_writes() == 0  # nothing applied yet

        await first.kill()
        env.attio.faults.fail_next = 0

        async with env.daemon() as second:
            def role() -> str | None:
                contact = contact_of(e2e, person)
                return None if contact is None else contact["defaultFields"]["role"]

            await second.wait_for(lambda: role() == "Survivor of SIGKILL",
                                  message="the change applied after the restart")

            async def processed() -> bool:
                events = await crm_events(e2e)
                return len(events) == 1 and events[0]["state"] == "processed"

            await second.wait_for(processed, message="event processed")
            (event,) = await crm_events(e2e)
            assert event["eventId"] == stored["eventId"]
            assert event["lastError"] is None

        contact = contact_of(e2e, person)
        assert contact is not None
        assert_contact_matches(contact, expected_contact(env.attio, person))
        counts = e2e.request_counts()
        assert counts[("PATCH", "/v1/contacts/{id}")] == 1, counts
        assert e2e.contact_writes() == 1, counts
        assert len(e2e.quo_contacts()) == PEOPLE


async def test_locked_state_database_at_start_is_retried(
    tmp_path: Path,
) -> None:
    """A tenant's failing first write is a tenant crash, not a daemon crash (STYLE §2-3).

    1. a first daemon creates the state database, syncs, stops (exit 0)
    2. the test holds the database's write lock longer than SQLite's busy timeout
       (an operator's long `crmsync sync`, a backup tool)
    3. a second daemon starts; the tenant's first write gives up ("database is locked")
    4. the lock is released
    Result: the daemon is still running; the supervisor restarts the tenant, which
    goes live; SIGTERM ends it with 0. (Regression test: the first write once ran
    outside the restart loop and failed the tenant for good, or ended the daemon.)
    """
    async with live_env(tmp_path, people=PEOPLE) as env:
        async with env.daemon():
            pass
        lock = sqlite3.connect(env.e2e.state_path, isolation_level=None, timeout=5)
        try:
            lock.execute("BEGIN IMMEDIATE")
            daemon = await env.start(wait=False)
            # Until the tenant's first write has surely given up (or the daemon died).
            with contextlib.suppress(TimeoutError):
                await wait_until(lambda: not daemon.running,
                                 within=BUSY_TIMEOUT_MS / 1000 + 2.0, interval=0.1)
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert daemon.running, f"daemon exited with {daemon.process.returncode}\n" \
            + daemon.output
        await daemon.wait_ready()
        assert await daemon.terminate() == 0, daemon.output
