"""End to end: a tenant moves from legacy Quo webhooks to 2026-03-30 under SMS traffic.

1. `crmsync run` on `quo.webhooks = "legacy"`: the tenant's four legacy webhooks
2. an SMS from one of five CRM people every 200 ms, for the whole test
3. the config says "2026-03-30"; SIGHUP: the tenant restarts in the same process (the
   listener stays up) and migrates: new webhook disabled → signed test event verified →
   enabled → legacy deleted; while both are enabled, an SMS comes twice (legacy and
   new envelope) and is stored once
4. the traffic goes on through the new webhook, then stops
Result: every SMS has exactly one note on its person (no SMS lost in the switch, none
noted twice), no legacy webhook is left, one 2026-03-30 webhook is enabled, and
SIGTERM ends the daemon with 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from pathlib import Path

import pytest
from support.live import TENANT, LiveEnv, live_env, notes_of, unique_phones

from crmsync.sim.quo.publish import Publication
from crmsync.sim.quo.state import QuoSim

pytestmark = pytest.mark.slow

PEOPLE = 20
SENDERS = 5
EVERY = 0.2  # seconds between two SMS
BEFORE_SWITCH = 10  # SMS sent on legacy only
AFTER_SWITCH = 10  # SMS sent once the legacy webhooks are gone


class Traffic:
    """An SMS every `EVERY` seconds, round robin over the senders, until stopped."""

    def __init__(self, quo: QuoSim, senders: list[tuple[str, str]]) -> None:
        self.quo = quo
        self.senders = senders
        self.sent: list[tuple[str, str]] = []  # (record id, text)
        self.publications: list[Publication] = []
        self.stop = asyncio.Event()
        self._inflight: set[asyncio.Task[object]] = set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        index = 0
        while not self.stop.is_set():
            record_id, phone = self.senders[index % len(self.senders)]
            text = f"migration traffic SMS #{index:03d}"
            self.sent.append((record_id, text))
            # Fired on the clock, not after the previous delivery: the sim's publish
            # waits for the first attempts, which must not slow the traffic down.
            task: asyncio.Task[object] = asyncio.create_task(self._send(phone, text))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            index += 1
            next_at = start + index * EVERY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), max(0.0, next_at - loop.time()))
        await asyncio.gather(*self._inflight)

    async def _send(self, phone: str, text: str) -> None:
        self.publications.append(await self.quo.sms(phone, text))


def ours(env: LiveEnv) -> tuple[list[str], list[dict[str, object]]]:
    url = f"{env.base_url}/webhooks/{TENANT}/quo"
    legacy = [str(w["id"]) for w in env.quo.webhooks.values() if w["url"] == url]
    new = [w for w in env.quo.webhooks_v2.values() if w["url"] == url]
    return legacy, new


def note_counts(env: LiveEnv, sent: list[tuple[str, str]]) -> Counter[str]:
    """How many notes hold each SMS text (on its sender)."""
    counts: Counter[str] = Counter()
    for record_id in {r for r, _ in sent}:
        for note in notes_of(env.attio, record_id):
            for _, text in sent:
                if text in note["content_markdown"]:
                    counts[text] += 1
    return counts


async def test_sms_traffic_through_a_migration_has_one_note_each(tmp_path: Path) -> None:
    async with live_env(tmp_path, people=PEOPLE, quo_webhooks="legacy") as env:
        daemon = await env.start()
        legacy, new = ours(env)
        assert len(legacy) == 4 and new == []
        senders = list(unique_phones(env.attio).items())[:SENDERS]
        assert len(senders) == SENDERS
        traffic = Traffic(env.quo, senders)
        runner = asyncio.create_task(traffic.run())
        try:
            await daemon.wait_for(lambda: len(traffic.sent) >= BEFORE_SWITCH,
                                  message="SMS on legacy")
            path = env.e2e.config_path
            path.write_text(path.read_text().replace('webhooks = "legacy"',
                                                     'webhooks = "2026-03-30"'))
            daemon.signal(signal.SIGHUP)

            def migrated() -> bool:
                legacy, new = ours(env)
                return not legacy and len(new) == 1 and new[0]["status"] == "enabled"

            await daemon.wait_for(migrated, within=60, message="legacy webhooks replaced")
            switched_at = len(traffic.sent)
            await daemon.wait_for(lambda: len(traffic.sent) >= switched_at + AFTER_SWITCH,
                                  message="SMS on the new system")
        finally:
            traffic.stop.set()
            await runner
        sent = traffic.sent
        texts = [text for _, text in sent]

        def all_noted() -> bool:
            counts = note_counts(env, sent)
            return all(counts[text] >= 1 for text in texts)

        await daemon.wait_for(all_noted, within=60, message="a note for every SMS")
        counts = note_counts(env, sent)
        twice = {text: n for text, n in counts.items() if n != 1}
        assert not twice, f"SMS noted more than once: {twice}"
        notes = sum(len(notes_of(env.attio, r)) for r, _ in senders)
        assert notes == len(sent), (notes, len(sent))
        legacy, new = ours(env)
        assert legacy == [] and len(new) == 1
        (webhook,) = new
        deliveries = env.quo.hooks.log[str(webhook["id"])].values()
        through_new = sum(1 for d in deliveries if d.event_type == "message.received"
                          and d.event_id is not None)
        both = sum(1 for p in traffic.publications if p.legacy is not None and p.deliveries)
        print(f"\nmigration under traffic: {len(sent)} SMS ({switched_at} before the"
              f" legacy webhooks were gone), {notes} notes, {through_new} delivered through"
              f" the new webhook, {both} through both systems, 0 legacy webhooks left")
        assert "Traceback" not in daemon.output
        assert "failed at step" not in daemon.output, daemon.output
        rc = await daemon.terminate()
        assert rc == 0, daemon.output
