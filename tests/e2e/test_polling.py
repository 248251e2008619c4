"""End to end: the poller catches what webhooks missed, and the keeper restores the webhook.

The daemon runs with `poll_interval = 5`: every 5 s a full re-scan of Attio (the
content hash skips unchanged people: no Quo request), and every min(300, 5) s the
subscription keeper checks the webhooks. Scans are observed through the sync runs in
`/status` (`lastRun.id`, one run per scan).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.e2e import ATTIO_KEY, assert_contact_matches, expected_contact
from support.live import Daemon, LiveEnv, contact_of, live_env

pytestmark = pytest.mark.slow

PEOPLE = 20
POLL_INTERVAL = 5.0
# One interval until the next scan starts, plus the scan itself and a loaded machine.
WITHIN_ONE_SCAN = POLL_INTERVAL + 10.0


async def delete_crm_webhooks(env: LiveEnv) -> list[str]:
    """Delete every Attio webhook through the API, as a CRM admin would."""
    headers = {"Authorization": f"Bearer {ATTIO_KEY}"}
    deleted = []
    async with aiohttp.ClientSession(headers=headers) as session:
        for webhook_id in list(env.attio.webhooks):
            async with session.delete(f"{env.e2e.attio_url}/webhooks/{webhook_id}") as r:
                assert r.status == 200, (r.status, await r.text())
            deleted.append(webhook_id)
    assert env.attio.webhooks == {}
    return deleted


async def completed_run(daemon: Daemon) -> dict[str, Any] | None:
    """The latest sync run if it has completed (None while one is running)."""
    run = (await daemon.tenant_status())["lastRun"]
    return run if run is not None and run["state"] == "completed" else None


async def wait_next_scan(daemon: Daemon, after: int) -> int:
    """Wait until a scan newer than run `after` has completed; its run id."""
    seen: list[int] = []

    async def newer() -> bool:
        run = await completed_run(daemon)
        if run is not None and run["id"] > after:
            seen.append(run["id"])
            return True
        return False

    await daemon.wait_for(newer, within=WITHIN_ONE_SCAN, message=f"a scan after run {after}")
    return seen[-1]


async def test_missed_change_is_polled_and_webhook_recreated(tmp_path: Path) -> None:
    """Without any webhook, a change still reaches Quo by re-scan, and nothing else is written.

    1. daemon live (poll_interval 5 s), 20 people synced
    2. the CRM webhook is deleted through Attio's API; deliveries are switched off
    3. one person's job title changes in Attio (no webhook can tell the daemon)
    4. within one interval (+ margin) the re-scan PATCHes that contact
    5. the keeper re-creates the CRM webhook for the daemon's URL
    6. two more scans complete
    Result: exactly 1 Quo write in total (the PATCH): unchanged people cost nothing.
    """
    async with (
        live_env(tmp_path, people=PEOPLE, poll_interval=POLL_INTERVAL) as env,
        env.daemon() as daemon,
    ):
        e2e = env.e2e
        (old_webhook,) = await delete_crm_webhooks(env)
        env.attio.deliverer.mode = "drop"
        e2e.quo.reset_stats()
        start_run = (await daemon.tenant_status())["lastRun"]["id"]
        attempts_before = len(env.attio.deliverer.attempts)

        person = next(r.record_id for r in env.attio.people)
        env.attio.update_person(person, job_title="Head of Polling")

        def role() -> str | None:
            contact = contact_of(e2e, person)
            return None if contact is None else contact["defaultFields"]["role"]

        await daemon.wait_for(lambda: role() == "Head of Polling", within=WITHIN_ONE_SCAN,
                              message="the polled change in Quo")
        contact = contact_of(e2e, person)
        assert contact is not None
        assert_contact_matches(contact, expected_contact(env.attio, person))
        assert len(env.attio.deliverer.attempts) == attempts_before  # no webhook sent

        crm_url = f"{env.base_url}/webhooks/acme/crm"
        await daemon.wait_for(
            lambda: [w.target_url for w in env.attio.webhooks.values()] == [crm_url],
            within=WITHIN_ONE_SCAN, message="CRM webhook re-created",
        )
        assert old_webhook not in env.attio.webhooks

        last = await wait_next_scan(daemon, start_run)
        last = await wait_next_scan(daemon, last)
        assert last >= start_run + 2
        counts = e2e.request_counts()
        assert counts[("PATCH", "/v1/contacts/{id}")] == 1, counts
        assert e2e.contact_writes() == 1, counts
        assert len(e2e.quo_contacts()) == PEOPLE
        e2e.assert_rate_respected()


async def test_unnotified_delete_needs_two_complete_scans(tmp_path: Path) -> None:
    """A person deleted without a webhook leaves Quo only after two scans missed it.

    1. daemon live (poll_interval 5 s); deliveries switched off
    2. right after a scan completes, a person is deleted in Attio (no webhook)
    3. the next scan completes: the person is missed once → the contact stays
    4. the scan after that misses it again → a direct fetch confirms the 404 →
       the contact is deleted, the mapping kept with action `deleted`
    Result: exactly one Quo write (the DELETE), after the second scan, not before.
    """
    async with (
        live_env(tmp_path, people=PEOPLE, poll_interval=POLL_INTERVAL) as env,
        env.daemon() as daemon,
    ):
        e2e = env.e2e
        env.attio.deliverer.mode = "drop"
        initial_run = (await daemon.tenant_status())["lastRun"]["id"]
        # Delete right after a scan: the next one is a whole interval away, so no scan
        # is in flight that could still have seen the person.
        after_scan = await wait_next_scan(daemon, initial_run)
        person = next(r.record_id for r in env.attio.people)
        contact = contact_of(e2e, person)
        assert contact is not None
        e2e.quo.reset_stats()
        env.attio.delete_person(person)

        first_miss = await wait_next_scan(daemon, after_scan)
        assert contact_of(e2e, person) is not None, "deleted after a single scan"
        mapping = [m for m in await e2e.mappings() if m["crmRecordId"] == person]
        assert [m["action"] for m in mapping] != ["deleted"], mapping

        await daemon.wait_for(lambda: contact_of(e2e, person) is None,
                              within=WITHIN_ONE_SCAN, message="contact deleted")
        run = (await daemon.tenant_status())["lastRun"]
        assert run["id"] > first_miss, (run, first_miss)
        (row,) = [m for m in await e2e.mappings() if m["crmRecordId"] == person]
        assert row["action"] == "deleted" and row["quoContactId"] == contact["id"]
        counts = e2e.request_counts()
        assert counts[("DELETE", "/v1/contacts/{id}")] == 1, counts
        assert e2e.contact_writes() == 1, counts
        assert len(e2e.quo_contacts()) == PEOPLE - 1
