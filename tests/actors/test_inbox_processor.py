"""`InboxProcessor` alone: stored webhook events applied once each, from a real store.

CRM events go through the real `CrmChangeHandler` (Attio simulator → Quo simulator);
Quo events go to a small fake handler that can be told to fail. The processor is a
long-running actor: each test stores the events first, starts it, and runs it until a
pass over the inbox applies nothing (it is idle, waiting to be woken), then stops it.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from actors.harness import (
    TENANT,
    Attio,
    Quo,
    attio_env,
    quo_env,
    run_actor,
    state_store,
)

from crmsync.actors.inbox_processor import BATCH, InboxProcessor, next_attempt
from crmsync.adapters.base import WebhookEvent
from crmsync.net.ratelimit import Lane
from crmsync.net.retry import RetryPolicy
from crmsync.services.contact_writes import QuoContactSync, RecordWriter
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.store import InboxEvent, Source, Store, open_store


class FixedDelay(RetryPolicy):
    """Retry after exactly `base_delay` seconds (no jitter), so tests know when."""

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        return self.base_delay


@dataclass
class FakeQuoEvents:
    """Stands in for the activity logger: fails the first `failures` calls.

    `on_call` runs at each call (a test advances its fake clock there); `succeeded`
    is set by the first call that works."""

    failures: int = 0
    calls: list[tuple[str, bytes]] = field(default_factory=list)
    on_call: Callable[[], None] = lambda: None
    succeeded: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, event_type: str, body: bytes) -> str:
        self.calls.append((event_type, body))
        self.on_call()
        if len(self.calls) <= self.failures:
            raise RuntimeError("Quo is down")
        self.succeeded.set()
        return "noted"


class FakeClock:
    """The store's clock, moved by the test: row times and retry windows follow it."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Passes:
    """Watches the processor's passes over the inbox: `idle()` returns after a pass
    that applied nothing, i.e. once everything due was applied."""

    def __init__(self, processor: InboxProcessor, monkeypatch: pytest.MonkeyPatch) -> None:
        self.applied: list[int] = []
        self._idle = asyncio.Event()
        real = processor.process_available

        async def process_available() -> int:
            done = await real()
            self.applied.append(done)
            if done == 0:
                self._idle.set()
            return done

        monkeypatch.setattr(processor, "process_available", process_available)

    def rearm(self) -> None:
        self._idle.clear()

    async def idle(self) -> None:
        await self._idle.wait()


@dataclass
class Env:
    store: Store
    attio: Attio
    quo: Quo
    crm_changes: CrmChangeHandler
    monkeypatch: pytest.MonkeyPatch
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    handled: list[WebhookEvent] = field(default_factory=list)

    def processor(
        self, quo_events: FakeQuoEvents | None = None, *, store: Store | None = None,
        **options: Any,
    ) -> tuple[InboxProcessor, Passes]:
        # No idle polling: a test wakes the processor itself when it wants a pass.
        options.setdefault("idle_poll_seconds", 60.0)
        options.setdefault("retry", FixedDelay(base_delay=60.0))
        processor = InboxProcessor(TENANT, store=store or self.store,
                                   adapter=self.attio.adapter,
                                   crm_changes=self.crm_changes, quo_events=quo_events,
                                   wake=self.wake, **options)
        return processor, Passes(processor, self.monkeypatch)

    async def store_event(
        self, source: Source, event_id: str, event_type: str, body: bytes,
        headers: dict[str, str] | None = None, *, store: Store | None = None,
    ) -> int:
        row = await (store or self.store).inbox.insert(TENANT, source, event_id, event_type,
                                                       body, headers or {})
        assert row is not None
        return row

    async def event(self, row: int, *, store: Store | None = None) -> InboxEvent:
        event = await (store or self.store).inbox.get(TENANT, row)
        assert event is not None
        return event


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    async with attio_env() as attio, quo_env() as quo, state_store(tmp_path) as store:
        live = QuoContactSync(quo.client, lane=Lane.LIVE)
        crm_changes = CrmChangeHandler(TENANT, adapter=attio.adapter, store=store,
                                       quo=quo.client,
                                       records=RecordWriter(TENANT, store=store, sync=live))
        env = Env(store, attio, quo, crm_changes, monkeypatch)
        real = crm_changes.handle

        async def handle(event: WebhookEvent) -> list[str]:
            env.handled.append(event)
            return await real(event)

        monkeypatch.setattr(crm_changes, "handle", handle)
        yield env


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def clocked(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Store]:
    """A second state database whose rows are stamped by the test's `clock`."""
    async with open_store(tmp_path / "clocked.db", clock=clock) as store:
        await store.tenants.upsert(TENANT, "attio")
        yield store


def attio_body(event_type: str, record_id: str) -> bytes:
    """An Attio webhook body as the simulator sends it (ids only, no values)."""
    return msgspec.json.encode({"webhook_id": "wh-1", "events": [{
        "event_type": event_type,
        "id": {"workspace_id": "ws-1", "object_id": "obj-people", "record_id": record_id},
        "actor": {"type": "workspace-member", "id": "m-1"},
    }]})


async def test_a_pending_crm_event_is_claimed_applied_once_and_marked_processed(
    env: Env,
) -> None:
    """1. Ada was created in Attio; her `record.created` webhook is stored, pending
    2. the processor runs to idle; then it is woken again and runs to idle again.
    Result: the event was handled once: Ada is one Quo contact with a webhook
    mapping; the event is `processed` after one attempt; the second wake-up applies
    nothing more (no handler call, no Quo request)."""
    ada = env.attio.sim.add_person(first_name="Ada", emails=["ada@example.com"], notify=False)
    row = await env.store_event("crm", "evt-1", "record.created",
                                attio_body("record.created", ada), {"Idempotency-Key": "evt-1"})
    processor, passes = env.processor()

    async with run_actor(processor, until=passes.idle) as running:
        await running.wait_for(passes.idle(), "apply the stored event")
        passes.rearm()
        env.wake.set()
        await running.wait_for(passes.idle(), "go idle after a wake-up")

    # The parsed event's id is the signed body's hash (the adapter ignores Idempotency-Key).
    body_hash = hashlib.sha256(attio_body("record.created", ada)).hexdigest()
    assert [e.event_id for e in env.handled] == [body_hash]
    assert [(c.record_id, c.kind) for c in env.handled[0].changes] == [(ada, "created")]
    contact = env.quo.contacts_by_external_id()[ada]
    assert env.quo.writes() == 1
    mapping = await env.store.mappings.get(TENANT, "people", ada)
    assert mapping is not None
    assert (mapping.quo_contact_id, mapping.sync_method) == (contact["id"], "webhook")
    event = await env.event(row)
    assert (event.state, event.attempts, event.last_error) == ("processed", 1, None)
    assert event.processed_at is not None
    assert passes.applied[0] == 1
    assert passes.applied[1:] == [0] * (len(passes.applied) - 1)


async def test_events_are_applied_in_arrival_order(env: Env) -> None:
    """Three Quo events stored one after another reach the handler in that order."""
    quo_events = FakeQuoEvents()
    for n in range(3):
        await env.store_event("quo", f"EV{n}", "message.received", f"body-{n}".encode())
    processor, passes = env.processor(quo_events)

    async with run_actor(processor, until=passes.idle):
        pass

    assert quo_events.calls == [("message.received", f"body-{n}".encode()) for n in range(3)]


async def test_a_failing_handler_leaves_the_event_pending_for_a_retry(env: Env) -> None:
    """1. a Quo event is stored; its handler fails (Quo is down); retries wait 60 s
    2. the processor runs to idle.
    Result: the event is back to `pending` with the error and one attempt counted; it
    is not retried before its backoff, and not dead-lettered."""
    quo_events = FakeQuoEvents(failures=1)
    row = await env.store_event("quo", "EV1", "call.completed", b"{}")
    processor, passes = env.processor(quo_events)

    async with run_actor(processor, until=passes.idle):
        pass

    event = await env.event(row)
    assert (event.state, event.attempts) == ("pending", 1)
    assert event.last_error == "RuntimeError: Quo is down"
    assert len(quo_events.calls) == 1
    assert await env.store.dead_letters.list(TENANT) == []


async def test_a_failed_event_is_retried_once_its_backoff_passed(env: Env) -> None:
    """1. a Quo event's handler fails once, then works; the backoff is 0 s
    2. the processor runs to idle.
    Result: the handler ran twice; the event is `processed` after two attempts."""
    quo_events = FakeQuoEvents(failures=1)
    row = await env.store_event("quo", "EV1", "call.completed", b"{}")
    processor, passes = env.processor(quo_events, retry=FixedDelay(base_delay=0.0))

    async with run_actor(processor, until=passes.idle):
        pass

    event = await env.event(row)
    assert (event.state, event.attempts, event.last_error) == ("processed", 2, None)
    assert len(quo_events.calls) == 2


async def test_an_event_is_retried_past_eight_attempts_within_its_retry_window(
    env: Env,
) -> None:
    """1. a Quo event's handler fails 8 times (a CRM outage), then works; no backoff
    2. the processor runs to idle.
    Result: the event is `processed` after 9 attempts, never dead-lettered: the retry
    budget is a time window (24 h by default), not a count. (Regression test: the
    8th failure dead-lettered it, and its note was never written.)"""
    quo_events = FakeQuoEvents(failures=8)
    row = await env.store_event("quo", "EV1", "message.received", b'{"id": "EV1"}')
    processor, passes = env.processor(quo_events, retry=FixedDelay(base_delay=0.0))

    async with run_actor(processor, until=passes.idle):
        pass

    event = await env.event(row)
    assert (event.state, event.attempts, event.last_error) == ("processed", 9, None)
    assert len(quo_events.calls) == 9
    assert await env.store.dead_letters.list(TENANT, include_resolved=True) == []


async def test_an_event_failing_past_its_retry_window_is_failed_and_dead_lettered(
    env: Env, clocked: Store, clock: FakeClock,
) -> None:
    """1. a Quo event's handler always fails, and each attempt takes an hour of the
       store's clock; the retry window is 24 h; no backoff
    2. the processor runs to idle.
    Result: the 24th failure, 24 h after the event arrived, makes it `failed` (no 25th
    attempt) and one `webhook_failed` dead letter keeps its body and error."""

    def an_hour_passes() -> None:
        clock.now += 3600

    quo_events = FakeQuoEvents(failures=1000, on_call=an_hour_passes)
    row = await env.store_event("quo", "EV1", "call.completed", b'{"id": "EV1"}',
                                store=clocked)
    processor, passes = env.processor(quo_events, store=clocked, retry_window=24 * 3600.0,
                                      retry=FixedDelay(base_delay=0.0))

    async with run_actor(processor, until=passes.idle):
        pass

    event = await env.event(row, store=clocked)
    assert (event.state, event.attempts) == ("failed", 24)
    assert len(quo_events.calls) == 24
    (dead,) = await clocked.dead_letters.list(TENANT)
    assert (dead.crm_object, dead.crm_record_id, dead.category) == (
        "webhook", "EV1", "webhook_failed")
    assert (dead.payload, dead.error) == ('{"id": "EV1"}', "RuntimeError: Quo is down")
    assert dead.created_at == event.received_at + 24 * 3600


@pytest.mark.parametrize(
    ("now", "backoff", "expected"),
    [
        (100.0, 10.0, 110.0),  # well inside the window: after the backoff
        (190.0, 60.0, 200.0),  # the backoff would overshoot: one last try at the end
        (200.0, 10.0, None),  # the window is over: dead-letter
        (250.0, 0.0, None),
    ],
)
def test_next_attempt_stays_inside_the_retry_window(
    now: float, backoff: float, expected: float | None
) -> None:
    """The event was queued at 0 with a 200 s window."""
    policy = FixedDelay(base_delay=backoff)
    assert next_attempt(policy, 3, now=now, queued_at=0.0, window=200.0) == expected


async def test_events_backing_off_do_not_block_a_newer_event(env: Env) -> None:
    """1. a full batch of Quo events fails (the CRM is down) and backs off for 60 s
    2. a new event arrives and the processor is woken.
    Result: the new event is applied at once; the backing-off ones are not tried
    again before their time. (Regression test: the processor always read the oldest
    batch of pending events, all still backing off, and never reached the new one.)"""
    quo_events = FakeQuoEvents(failures=BATCH)
    for n in range(BATCH):
        await env.store_event("quo", f"EV{n}", "message.received", f"old-{n}".encode())
    processor, passes = env.processor(quo_events)

    async with run_actor(processor, until=passes.idle) as running:
        await running.wait_for(passes.idle(), "try the first batch")
        passes.rearm()
        new = await env.store_event("quo", "EV-new", "message.received", b"new")
        env.wake.set()
        await running.wait_for(quo_events.succeeded.wait(), "apply the new event")

    assert (await env.event(new)).state == "processed"
    assert len(quo_events.calls) == BATCH + 1
    assert quo_events.calls[-1] == ("message.received", b"new")
    pending = await env.store.inbox.list(TENANT, limit=BATCH + 1)
    assert sum(e.state == "pending" for e in pending) == BATCH


async def test_the_idle_wait_ends_when_a_retry_is_due(env: Env) -> None:
    """1. a Quo event fails once; its retry is due 0.3 s later; idle polling is 60 s
    2. nothing wakes the processor.
    Result: it retries the event when it is due (well before the idle poll) and the
    event is `processed`. (Regression test: it slept through the idle poll.)"""
    quo_events = FakeQuoEvents(failures=1)
    row = await env.store_event("quo", "EV1", "message.received", b"{}")
    processor, passes = env.processor(quo_events, retry=FixedDelay(base_delay=0.3))

    async with run_actor(processor, until=passes.idle) as running:
        await running.wait_for(quo_events.succeeded.wait(), "retry when due")
        passes.rearm()

    event = await env.event(row)
    assert (event.state, event.attempts) == ("processed", 2)


async def test_old_settled_events_are_pruned_on_a_timer_not_per_event(
    env: Env, clocked: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1. 31 days ago (the default retention is 30 days): a processed and an ignored
       event, a failed one with its open dead letter, and an event whose dead letter
       was resolved; yesterday: a processed event
    2. the processor runs to idle, is woken by a new event and runs to idle again.
    Result: the old processed and ignored rows are gone and the resolved dead
    letter's payload (the SMS body) is blank; the failed event, its open dead letter
    and yesterday's event are kept. Pruning ran once, not again for the new event."""
    day = 86400.0
    clock.now -= 31 * day
    rows = {}
    for name in ("processed", "ignored", "failed"):
        rows[name] = await env.store_event("quo", f"EV-{name}", "message.received",
                                           b"secret SMS", store=clocked)
        assert await clocked.inbox.claim(TENANT, rows[name])
    await clocked.inbox.mark_processed(TENANT, rows["processed"])
    await clocked.inbox.mark_ignored(TENANT, rows["ignored"], "not for us")
    await clocked.inbox.mark_failed(TENANT, rows["failed"], "down")
    add = clocked.dead_letters.add
    still_open = await add(TENANT, "webhook", "EV-failed", "webhook_failed", "secret SMS", "x")
    resolved = await add(TENANT, "webhook", "EV-old", "webhook_failed", "secret SMS", "x")
    await clocked.dead_letters.mark_resolved(TENANT, resolved)
    clock.now += 30 * day
    recent = await env.store_event("quo", "EV-recent", "message.received", b"{}",
                                   store=clocked)
    assert await clocked.inbox.claim(TENANT, recent)
    await clocked.inbox.mark_processed(TENANT, recent)
    clock.now += day

    prunes: list[float] = []
    real_prune = clocked.inbox.prune

    async def prune(tenant_id: str, before: float, limit: int = 500) -> int:
        prunes.append(before)
        return await real_prune(tenant_id, before, limit)

    monkeypatch.setattr(clocked.inbox, "prune", prune)
    quo_events = FakeQuoEvents()
    processor, passes = env.processor(quo_events, store=clocked)

    async with run_actor(processor, until=passes.idle) as running:
        await running.wait_for(passes.idle(), "prune and go idle")
        passes.rearm()
        await env.store_event("quo", "EV-new", "message.received", b"{}", store=clocked)
        env.wake.set()
        await running.wait_for(quo_events.succeeded.wait(), "apply the new event")

    kept = {e.event_id for e in await clocked.inbox.list(TENANT)}
    assert kept == {"EV-failed", "EV-recent", "EV-new"}
    letters = {d.id: d.payload for d in await clocked.dead_letters.list(TENANT, True)}
    assert letters == {still_open: "secret SMS", resolved: ""}
    assert prunes == [clock.now - 30 * day]  # one batch was enough, and only once


async def test_a_malformed_crm_event_is_marked_ignored(env: Env) -> None:
    """1. a CRM event whose body is not JSON was stored (and one without events)
    2. the processor runs to idle.
    Result: both are `ignored` with the reason, never retried or dead-lettered; no
    change was handled and Quo saw no request."""
    not_json = await env.store_event("crm", "evt-bad", "record.updated", b"not json")
    no_events = await env.store_event("crm", "evt-empty", "record.updated",
                                      b'{"webhook_id": "wh-1", "events": []}')
    processor, passes = env.processor()

    async with run_actor(processor, until=passes.idle):
        pass

    for row, reason in ((not_json, "body is not JSON"),
                        (no_events, "no 'events' list in the Attio payload")):
        event = await env.event(row)
        assert (event.state, event.attempts, event.last_error) == ("ignored", 1, reason)
        assert event.processed_at is not None
    assert env.handled == []
    assert env.quo.sim.stats.total_requests == 0
    assert await env.store.dead_letters.list(TENANT) == []


async def test_an_event_interrupted_by_a_stop_is_requeued_at_setup_and_applied(
    env: Env,
) -> None:
    """1. a previous processor claimed a Quo event (`processing`) and was stopped
       before it finished
    2. a new processor starts and runs to idle.
    Result: its setup put the event back to pending; it was applied and is
    `processed`, with both attempts counted."""
    quo_events = FakeQuoEvents()
    row = await env.store_event("quo", "EV1", "call.completed", b"{}")
    assert await env.store.inbox.claim(TENANT, row)
    processor, passes = env.processor(quo_events)

    async with run_actor(processor, until=passes.idle):
        pass

    event = await env.event(row)
    assert (event.state, event.attempts) == ("processed", 2)
    assert len(quo_events.calls) == 1
