"""`StallDetector`: a sync pass or the inbox making no progress is flagged (gauge,
readiness reason, one log line) and cleared again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from support.paging import PagedAdapter

from crmsync.store import open_store
from crmsync.tenant.progress import Progress
from crmsync.tenant.stall import StallDetector
from crmsync.web.health import Health


def stall_value(tenant: str, stage: str) -> float | None:
    return REGISTRY.get_sample_value("crmsync_stalled", {"tenant": tenant, "stage": stage})


async def test_stall_detector_flags_and_clears_each_stage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """1. a sync pass with records in flight and no settle for > 300 s: `sync` stalled
    2. a settle: cleared
    3. a pending webhook event, tenant live, the same oldest event for > 300 s: `inbox`
       stalled; while not live (initial sync) the same wait is no stall
    4. close(): the gauge series and readiness reasons are gone
    """
    now = [1000.0]
    progress = Progress(clock=lambda: now[0])
    health = Health()
    live = [True]
    async with open_store(tmp_path / "state.db") as store:
        await store.tenants.upsert("acme", "attio")
        detector = StallDetector(
            "acme", progress=progress, store=store, health=health,
            inbox_active=lambda: live[0], after=300, clock=lambda: now[0],
        )
        adapter = progress.watch(PagedAdapter(pages=3))  # type: ignore[arg-type]
        await adapter.fetch_page("people", None, 2)
        with caplog.at_level(logging.INFO, "crmsync.tenant.stall"):
            await detector.check()
            assert stall_value("acme", "sync") == 0 and health.ready()
            now[0] += 301
            await detector.check()
            await detector.check()
            assert stall_value("acme", "sync") == 1
            assert detector.stalled == {"sync"}
            (reason,) = health.not_ready_reasons()
            assert reason.startswith("acme/sync: stalled: sync pass made no progress for 301s")
            assert caplog.text.count("sync stalled") == 1
            progress.settled("created")
            await detector.check()
            assert stall_value("acme", "sync") == 0 and health.ready()
            assert "sync progressing again" in caplog.text

            await store.inbox.insert("acme", "crm", "ev-1", "record.updated", b"{}", {})
            await detector.check()
            now[0] += 301
            live[0] = False
            await detector.check()
            assert stall_value("acme", "inbox") == 0
            live[0] = True
            await detector.check()
            assert stall_value("acme", "inbox") == 1
            assert health.not_ready_reasons()[0].startswith("acme/inbox: stalled")
        detector.close()
        assert stall_value("acme", "inbox") is None and stall_value("acme", "sync") is None
        assert health.ready()
