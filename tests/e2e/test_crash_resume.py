"""End to end: `crmsync sync` is SIGKILLed mid initial sync, then started again.

The Quo simulator enforces 50 (or 100) requests/s, so 400 creates take seconds and the
kill lands mid-flight: some creates are acknowledged but not yet mapped, some pages
are written but their cursor not yet committed. The restart must resume from the
committed cursor, find the orphaned creates by externalId instead of creating them
again, and end with every person in Quo exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.e2e import E2E, e2e_env

from crmsync.sim.quo.testing import wait_until

pytestmark = pytest.mark.slow

PEOPLE = 400
RPS = 50
FAST_RPS = 100  # the double kill: same story, less waiting
PAGE_SIZE = 50
SEED = 4242


@contextlib.asynccontextmanager
async def running_sync(e2e: E2E) -> AsyncIterator[asyncio.subprocess.Process]:
    """`crmsync sync` in the background, its output drained; always reaped on exit."""
    process = await e2e.spawn_sync()
    drain = asyncio.create_task(process.communicate())
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        async with asyncio.timeout(10):
            await drain
            await process.wait()


async def kill_when(e2e: E2E, contacts: int) -> dict[str, Any]:
    """Start a sync, SIGKILL it once Quo holds `contacts` contacts; the status after."""
    async with running_sync(e2e) as process:
        await wait_until(
            lambda: len(e2e.quo.contacts.contacts) >= contacts
            or process.returncode is not None,
            within=60, interval=0.01, message=f"{contacts} contacts in Quo",
        )
        assert process.returncode is None, "sync finished before it could be killed"
        process.kill()
        assert await process.wait() == -signal.SIGKILL
    return await e2e.status()


def committed_offset(status: dict[str, Any]) -> int:
    """The people cursor the killed run had committed (0 if none yet)."""
    cursor = ((status["watermark"] or {}).get("people") or {}).get("cursor")
    return int(cursor) if cursor and cursor.isdigit() else 0


async def resume_and_check(e2e: E2E, killed: dict[str, Any]) -> None:
    """Restart the sync and check Quo, the mappings and the status are all consistent."""
    # Nobody closed the run and no process holds the state: status shows the tenant
    # stopped and the run as the next pass records it (failed, interrupted).
    assert killed["state"] == "stopped", killed
    assert (killed["lastRun"]["state"], killed["lastRun"]["error"]) == (
        "failed", "interrupted"), killed
    resume_from = committed_offset(killed)
    assert resume_from % PAGE_SIZE == 0 and resume_from < PEOPLE
    created_before = e2e.quo.count("POST", "/v1/contacts", 201)

    result = await e2e.sync()
    assert result.code == 0, result.describe()

    # Quo: every person exactly once, and hardly any wasted create.
    by_external_id = e2e.contacts_by_external_id()
    ids = {record.record_id for record in e2e.attio.people}
    assert set(by_external_id) == ids
    duplicates = {k: len(v) for k, v in by_external_id.items() if len(v) != 1}
    assert not duplicates, f"duplicate contacts: {duplicates}"
    posts = e2e.quo.count("POST", "/v1/contacts")
    assert posts <= PEOPLE * 1.01, e2e.quo.snapshot()
    assert e2e.quo.count("POST", "/v1/contacts", 201) == PEOPLE

    # Mappings: one per person, each to the contact carrying its id.
    rows = await e2e.mappings()
    assert sorted(r["crmRecordId"] for r in rows) == sorted(ids)
    contacts = e2e.quo.contacts.contacts
    for row in rows:
        assert contacts[row["quoContactId"]]["externalId"] == row["crmRecordId"], row
        # `unchanged`: mapped before the kill, in a page whose cursor was not committed.
        assert row["action"] in ("created", "linked", "unchanged"), row

    # Status: the resumed run started at the committed cursor and settled every record.
    status = await e2e.status()
    run, counts = status["lastRun"], status["counts"]
    assert run["state"] == "completed" and run["kind"] == "initial", status
    assert run["id"] > killed["lastRun"]["id"]
    assert counts["fetched"] == PEOPLE - resume_from, (resume_from, counts)
    settled = sum(counts[k] for k in ("created", "updated", "linked", "unchanged", "failed"))
    assert settled == counts["fetched"], counts
    assert counts["failed"] == status["deadLetters"] == 0
    # The resumed run created exactly the contacts Quo did not have yet.
    assert counts["created"] == PEOPLE - created_before, (created_before, counts)
    assert status["initialSyncCompletedAt"] is not None
    assert status["lastError"] is None
    assert not (status["watermark"] or {}).get("people", {}).get("cursor"), status
    e2e.assert_rate_respected()


async def test_sigkill_at_40_percent_then_resume(tmp_path: Path) -> None:
    """1. seed 400 Attio people; Quo (sim and config) at 50 requests/s
    2. `crmsync sync` starts; once Quo holds 40% of them, SIGKILL it
    3. `crmsync status --json`: the tenant `stopped`, the killed run shown as
       interrupted (nobody closed it), the cursor at a page
    4. `crmsync sync` again
    Result: exit 0; all 400 in Quo exactly once; POST /v1/contacts <= 404; every
    mapping points at its contact; the resumed run fetched from the committed
    cursor, created exactly the missing contacts, and left no cursor behind.
    """
    async with e2e_env(
        tmp_path, people=PEOPLE, seed=SEED, rps=RPS, page_size=PAGE_SIZE
    ) as e2e:
        killed = await kill_when(e2e, int(PEOPLE * 0.4))
        await resume_and_check(e2e, killed)


async def test_sigkill_twice_then_resume(tmp_path: Path) -> None:
    """1. seed 400 Attio people; Quo (sim and config) at 100 requests/s
    2. `crmsync sync`; SIGKILL right after its first page reached Quo
    3. `crmsync sync` again; SIGKILL it once Quo holds 70% of the people
    4. `crmsync sync` a third time
    Result: as after one kill: exit 0, all 400 exactly once, POST /v1/contacts <= 404,
    consistent mappings and status.
    """
    async with e2e_env(
        tmp_path, people=PEOPLE, seed=SEED, rps=FAST_RPS, page_size=PAGE_SIZE
    ) as e2e:
        first = await kill_when(e2e, PAGE_SIZE + 1)
        assert first["lastRun"]["error"] == "interrupted"
        killed = await kill_when(e2e, int(PEOPLE * 0.7))
        assert killed["lastRun"]["id"] > first["lastRun"]["id"]
        await resume_and_check(e2e, killed)
