"""End to end: Quo deliveries missed while the daemon was down are caught up at start.

1. `crmsync run` (2026-03-30 webhooks) registers the tenant's webhook; one SMS arrives
   and is noted; SIGTERM
2. while it is stopped, SMS and a missed call happen; every delivery attempt fails
   (nobody listens) until the simulator's retry schedule, shortened to 0 s, 0.3 s,
   0.3 s, is exhausted: each delivery is `failed` for good, as after Quo's 27.6 h
3. `crmsync run` again
Result: at start it lists the failed deliveries since the newest event its inbox holds
and asks Quo to retry each one; every event is applied once (one note per SMS, one per
call), `crmsync_quo_deliveries_caught_up_total{tenant="acme"}` counts them, and
nothing is asked for twice.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from support.live import (
    TENANT,
    LiveEnv,
    inbox,
    live_env,
    notes_of,
    unique_phones,
    wait_until,
)

pytestmark = pytest.mark.slow

PEOPLE = 20
SHORT_RETRIES = (0.0, 0.3, 0.3)
MISSED_SMS = 8


def webhook_id(env: LiveEnv) -> str:
    url = f"{env.base_url}/webhooks/{TENANT}/quo"
    (webhook,) = [w for w in env.quo.webhooks_v2.values() if w["url"] == url]
    return str(webhook["id"])


def caught_up(metrics_text: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(f'crmsync_quo_deliveries_caught_up_total{{tenant="{TENANT}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("crmsync_quo_deliveries_caught_up_total not exported")


async def test_events_fired_while_stopped_are_applied_once_after_start(
    tmp_path: Path,
) -> None:
    async with live_env(tmp_path, people=PEOPLE,
                        webhook_retry_schedule=SHORT_RETRIES) as env:
        senders = list(unique_phones(env.attio).items())[:4]
        (first_person, first_phone), *others = senders

        async with env.daemon() as daemon:
            hook = webhook_id(env)
            await env.quo.sms(first_phone, "before the outage")
            await daemon.wait_for(lambda: len(notes_of(env.attio, first_person)) == 1,
                                  message="the first SMS noted")

        # The daemon is down: every attempt fails until the schedule is exhausted.
        texts: list[tuple[str, str]] = []
        event_ids: list[str] = []
        for index in range(MISSED_SMS):
            person, phone = senders[index % len(senders)]
            text = f"sent while the daemon was down #{index}"
            texts.append((person, text))
            event_ids.append((await env.quo.sms(phone, text)).event_id)
        call_person, call_phone = others[0]
        missed = await env.quo.call_missed(call_phone)
        event_ids.append(missed.event_id)
        log = env.quo.hooks.log[hook]

        def all_failed() -> bool:
            ours = [d for d in log.values() if d.event_id in event_ids]
            return len(ours) == len(event_ids) and all(d.status == "failed" for d in ours)

        await wait_until(all_failed, within=30, message="every delivery failed for good")
        notes_before = {p: len(notes_of(env.attio, p)) for p, _ in senders}

        async with env.daemon() as daemon:
            def applied() -> bool:
                counts = Counter(
                    text for person, text in texts for note in notes_of(env.attio, person)
                    if text in note["content_markdown"]
                )
                return all(counts[text] >= 1 for _, text in texts) and len(
                    notes_of(env.attio, call_person)) > notes_before[call_person]

            await daemon.wait_for(applied, within=60, message="the missed events applied")

            async def settled() -> bool:
                rows = [e for e in await inbox(env.e2e) if e["eventId"] in event_ids]
                return len(rows) == len(event_ids) and all(
                    e["state"] in ("processed", "ignored") for e in rows)

            await daemon.wait_for(settled, within=30, message="the inbox settled")
            status, metrics_text = await daemon.get("/metrics")
            assert status == 200
            asked = caught_up(str(metrics_text))

        counts = Counter(
            text for person, text in texts for note in notes_of(env.attio, person)
            if text in note["content_markdown"]
        )
        assert all(counts[text] == 1 for _, text in texts), counts
        for person, _ in senders:
            expected = notes_before[person] + sum(1 for p, _ in texts if p == person) + (
                1 if person == call_person else 0)
            assert len(notes_of(env.attio, person)) == expected, person
        rows = [e for e in await inbox(env.e2e) if e["eventId"] in event_ids]
        assert sorted(e["eventId"] for e in rows) == sorted(event_ids)  # each once
        assert asked == len(event_ids), asked
        manual = [a for d in log.values() for a in d.attempts if a.trigger_type == "manual"]
        assert len(manual) == len(event_ids)
        assert all(d.status == "success" for d in log.values() if d.event_id in event_ids)
        print(f"\ndowntime catch-up: {len(event_ids)} events fired while stopped"
              f" ({MISSED_SMS} SMS, 1 missed call), all failed after"
              f" {len(SHORT_RETRIES)} attempts; {int(asked)} retried at start, each applied"
              " once")

