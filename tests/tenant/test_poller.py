"""`Poller` alone: the fallback pass every `interval`, and deletes after two missed scans.

The poller is given its pass (`run_pass`) and the CRM change handler; here both are
small fakes over a real state database. The fake pass "sees" records the way a real
one does with unchanged records: it touches their mappings. A mapping that two
consecutive complete scans did not see is handed to `apply_deleted` (which confirms
the delete with the CRM); a pass that crashed is not a complete scan.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterable
from collections.abc import Mapping as MappingOf
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
from actors.harness import TENANT, run_actor, state_store
from support.clock import FakeClock

from crmsync.adapters.base import CrmAdapter
from crmsync.instants import parse_instant
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.store import Counts, Mapping, Store, SyncRun
from crmsync.tenant.pipeline import SyncResult
from crmsync.tenant.poller import FULL_SCAN_SECONDS, WATERMARK, Poller

LONG_AGO = time.time() - 3600


@dataclass
class FakePass:
    """A sync pass that sees the records named for each call (and no others), or
    raises where a call's entry is an exception."""

    store: Store
    scans: list[dict[str, set[str]] | Exception] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)  # loop time of each call
    result: SyncResult = field(default_factory=lambda: sync_result())
    called: asyncio.Event = field(default_factory=asyncio.Event)

    plans: list[tuple[bool, dict[str, str] | None]] = field(default_factory=list)

    async def __call__(
        self, *, full: bool = True, start_cursors: MappingOf[str, str] | None = None
    ) -> SyncResult:
        self.plans.append((full, None if start_cursors is None else dict(start_cursors)))
        self.calls.append(asyncio.get_running_loop().time())
        self.called.set()
        scan = self.scans[len(self.calls) - 1] if len(self.calls) <= len(self.scans) else {}
        if isinstance(scan, Exception):
            raise scan
        for crm_object, record_ids in scan.items():
            for record_id in record_ids:
                assert await self.store.mappings.touch(TENANT, crm_object, record_id,
                                                       time.time())
        return self.result


@dataclass
class FakeCrmChanges:
    """Records what the poller asked to delete (the real handler checks with the CRM)."""

    deleted: list[tuple[str, str]] = field(default_factory=list)

    async def apply_deleted(self, crm_object: str, record_id: str) -> str:
        self.deleted.append((crm_object, record_id))
        return "deleted"


def sync_result() -> SyncResult:
    now = time.time()
    run = SyncRun(id=7, tenant_id=TENANT, kind="incremental", state="completed",
                  created_at=now, started_at=now, finished_at=now, error=None,
                  counts=Counts(fetched=3, unchanged=3))
    return SyncResult(run, ok=True, bulk_missing=[], dropped_phones=0)


@dataclass
class Env:
    store: Store
    run_pass: FakePass
    crm_changes: FakeCrmChanges = field(default_factory=FakeCrmChanges)

    def poller(self, crm_objects: Iterable[str] = ("people",), interval: float = 60.0) -> Poller:
        return Poller(TENANT, store=self.store, run_pass=self.run_pass,
                      crm_changes=cast(CrmChangeHandler, self.crm_changes),
                      crm_objects=list(crm_objects), interval=interval)

    async def mapped(self, crm_object: str, *record_ids: str) -> None:
        """Mappings last synced long ago, as an earlier pass left them."""
        for record_id in record_ids:
            await self.store.mappings.upsert(Mapping(
                tenant_id=TENANT, crm_object=crm_object, crm_record_id=record_id,
                quo_contact_id=f"CT-{record_id}", entity_type="person", sync_method="initial",
                action="created", content_hash="h", last_synced_at=LONG_AGO,
            ))

    async def missed(self, crm_object: str, record_id: str) -> int:
        mapping = await self.store.mappings.get(TENANT, crm_object, record_id)
        assert mapping is not None
        return mapping.missed_scans


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with state_store(tmp_path) as store:
        yield Env(store, FakePass(store))


async def test_poll_once_runs_the_pass_it_was_given_and_returns_its_result(env: Env) -> None:
    """One `poll_once()` runs the pass exactly once and returns that pass's result;
    with every record seen, nothing is handed to `apply_deleted`."""
    await env.mapped("people", "a")
    env.run_pass.scans = [{"people": {"a"}}]

    result = await env.poller().poll_once()

    assert result is env.run_pass.result
    assert len(env.run_pass.calls) == 1
    assert env.crm_changes.deleted == []
    assert await env.missed("people", "a") == 0


async def test_only_a_record_missed_by_two_consecutive_complete_scans_is_deleted(
    env: Env,
) -> None:
    """1. four mapped people: `seen` (seen by both passes), `gone` (by neither),
       `back` (missed by the first, seen by the second), `late` (seen by the first
       only); the passes touch what they see *while they run*
    2. the poller polls twice.
    Result: after the first poll nobody is deleted; after the second only `gone` is
    handed to `apply_deleted`; `late` has one miss, `back` and `seen` none."""
    await env.mapped("people", "seen", "gone", "back", "late")
    env.run_pass.scans = [{"people": {"seen", "late"}}, {"people": {"seen", "back"}}]
    poller = env.poller()

    await poller.poll_once()
    assert env.crm_changes.deleted == []
    await poller.poll_once()

    assert env.crm_changes.deleted == [("people", "gone")]
    assert {r: await env.missed("people", r) for r in ("seen", "gone", "back", "late")} == {
        "seen": 0, "gone": 2, "back": 0, "late": 1}


async def test_every_configured_object_is_scanned_and_no_other(env: Env) -> None:
    """1. one unseen mapping each in `people`, `companies` and `deals`; the poller is
       configured for `people` and `companies`
    2. it polls twice, with passes that see nothing.
    Result: the `people` and `companies` records are handed to `apply_deleted`, in
    that order; the `deals` record is not, and its miss count did not move."""
    await env.mapped("people", "p1")
    await env.mapped("companies", "c1")
    await env.mapped("deals", "d1")
    poller = env.poller(["people", "companies"])

    await poller.poll_once()
    await poller.poll_once()

    assert env.crm_changes.deleted == [("people", "p1"), ("companies", "c1")]
    assert await env.missed("deals", "d1") == 0


async def test_a_pass_that_crashed_is_not_a_complete_scan(env: Env) -> None:
    """1. `gone` is missed by a complete pass (one miss)
    2. the next pass crashes: the error reaches the caller of `poll_once()`
    3. the pass after that completes without seeing `gone`.
    Result: the crashed pass counted no miss and deleted nothing; only the third poll,
    the second *complete* scan to miss it, hands `gone` to `apply_deleted`."""
    await env.mapped("people", "gone")
    env.run_pass.scans = [{}, RuntimeError("CRM unreachable"), {}]
    poller = env.poller()

    await poller.poll_once()
    with pytest.raises(RuntimeError, match="CRM unreachable"):
        await poller.poll_once()
    assert await env.missed("people", "gone") == 1
    assert env.crm_changes.deleted == []

    await poller.poll_once()
    assert env.crm_changes.deleted == [("people", "gone")]


async def test_the_running_poller_polls_every_interval_until_stopped(env: Env) -> None:
    """1. a poller with a 50 ms interval is started
    2. it runs until it has run three passes, then is stopped (cancelled).
    Result: the first pass came one interval after the start, not at once, and each
    next one at least an interval after the previous; stopping it is clean."""
    interval = 0.05
    started = asyncio.get_running_loop().time()

    async def three_passes() -> None:
        while len(env.run_pass.calls) < 3:
            env.run_pass.called.clear()
            await env.run_pass.called.wait()

    async with run_actor(env.poller(interval=interval), until=three_passes):
        pass

    calls = env.run_pass.calls
    assert len(calls) >= 3
    gaps = [later - earlier for earlier, later in itertools.pairwise([started, *calls])]
    assert min(gaps) >= interval - 0.001


async def test_a_failing_pass_escapes_the_running_poller_to_its_supervisor(
    env: Env,
) -> None:
    """1. the poller's first pass raises
    2. the poller runs.
    Result: the error ends `run()` and reaches the test (the supervisor, in the
    daemon); the poller does not swallow it and carry on polling."""
    env.run_pass.scans = [RuntimeError("pass blew up")]

    async def forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(RuntimeError, match="pass blew up"):
        async with run_actor(env.poller(interval=0.01), until=forever):
            pass
    assert len(env.run_pass.calls) == 1


# -- polling from a watermark (CRMs that can list changes) ---------------------------------


@dataclass
class ChangesAdapter:
    """What the poller asks of an adapter: a cursor of the changes since a time."""

    can_list_changes: bool = True
    changes_lag: float = 120.0
    asked: list[tuple[str, float]] = field(default_factory=list)

    def changed_since_cursor(self, crm_object: str, since: float) -> str | None:
        self.asked.append((crm_object, since))
        return f"since:{since:.0f}" if self.can_list_changes else None


def watermark_poller(
    env: Env, adapter: ChangesAdapter, clock: FakeClock, objects: Iterable[str] = ("people",)
) -> Poller:
    return Poller(TENANT, store=env.store, run_pass=env.run_pass,
                  crm_changes=cast(CrmChangeHandler, env.crm_changes),
                  crm_objects=list(objects), interval=60.0,
                  adapter=cast(CrmAdapter, adapter), clock=clock)


async def watermark(env: Env, crm_object: str = "people") -> float:
    stored = await env.store.checkpoints.get(TENANT, crm_object, WATERMARK)
    assert stored is not None
    instant = parse_instant(stored)
    assert instant is not None
    return instant.timestamp()


async def test_a_crm_that_lists_changes_is_polled_from_the_watermark_less_its_lag(
    env: Env,
) -> None:
    """1. the first poll after start is a full scan; its start becomes the watermark
    2. the next polls list only the changes since that watermark less `changes_lag`,
       each moving the watermark to its own start
    Result: plans (full, None), then (incremental, since = watermark - lag)."""
    adapter, clock = ChangesAdapter(), FakeClock()
    poller = watermark_poller(env, adapter, clock)
    before = time.time()

    await poller.poll_once()
    first = await watermark(env)
    clock.advance(60)
    await poller.poll_once()
    second = await watermark(env)

    assert before - 1 <= first <= second <= time.time()
    expected_since = f"since:{first - adapter.changes_lag:.0f}"
    assert env.run_pass.plans == [(True, None), (False, {"people": expected_since})]


async def test_a_crm_that_lists_changes_is_still_scanned_in_full_once_a_day(
    env: Env,
) -> None:
    """Only a full scan notices a deletion whose webhook was lost: after
    FULL_SCAN_SECONDS the next poll is a full one again (and runs the deletion check)."""
    await env.mapped("people", "gone")
    adapter, clock = ChangesAdapter(), FakeClock()
    poller = watermark_poller(env, adapter, clock)

    await poller.poll_once()  # full: "gone" missed once
    clock.advance(60)
    await poller.poll_once()  # incremental: no deletion check
    assert await env.missed("people", "gone") == 1
    clock.advance(FULL_SCAN_SECONDS)
    await poller.poll_once()  # full again: missed twice -> deleted

    assert [full for full, _ in env.run_pass.plans] == [True, False, True]
    assert env.crm_changes.deleted == [("people", "gone")]


async def test_a_crm_that_cannot_list_changes_is_scanned_in_full_every_poll(env: Env) -> None:
    adapter, clock = ChangesAdapter(can_list_changes=False), FakeClock()
    poller = watermark_poller(env, adapter, clock)

    for _ in range(3):
        await poller.poll_once()
        clock.advance(60)

    assert env.run_pass.plans == [(True, None)] * 3


async def test_a_failed_pass_does_not_move_the_watermark(env: Env) -> None:
    """Records that failed are retried by the next incremental pass: it starts from
    the same watermark."""
    adapter, clock = ChangesAdapter(), FakeClock()
    poller = watermark_poller(env, adapter, clock)
    await poller.poll_once()
    kept = await env.store.checkpoints.get(TENANT, "people", WATERMARK)
    env.run_pass.result = SyncResult(sync_result().run, ok=False, bulk_missing=[],
                                     dropped_phones=0)

    clock.advance(60)
    await poller.poll_once()
    clock.advance(60)
    await poller.poll_once()

    assert await env.store.checkpoints.get(TENANT, "people", WATERMARK) == kept
    assert env.run_pass.plans[1] == env.run_pass.plans[2]


async def test_an_object_without_a_watermark_makes_the_poll_a_full_scan(env: Env) -> None:
    """A watermark per object: an object added to the config has none yet, so the
    next poll scans in full (every object) rather than skip its history."""
    adapter, clock = ChangesAdapter(), FakeClock()
    await watermark_poller(env, adapter, clock, objects=("people",)).poll_once()
    poller = watermark_poller(env, adapter, clock, objects=("people", "leads"))
    # The new poller has not scanned in full yet either: make it have, then look.
    await poller.poll_once()
    await env.store.checkpoints.delete(TENANT, "leads", WATERMARK)
    clock.advance(60)

    await poller.poll_once()

    assert [full for full, _ in env.run_pass.plans] == [True, True, True]
