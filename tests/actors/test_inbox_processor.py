"""`InboxProcessor` alone: stored webhook events applied once each, from a real store.

CRM events go through the real `CrmChangeHandler` (Attio simulator → Quo simulator);
Quo events go to a small fake handler that can be told to fail. The processor is a
long-running actor: each test stores the events first, starts it, and runs it until a
pass over the inbox applies nothing (it is idle, waiting to be woken), then stops it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
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

from crmsync.actors.inbox_processor import InboxProcessor
from crmsync.adapters.base import WebhookEvent
from crmsync.net.ratelimit import Lane
from crmsync.net.retry import RetryPolicy
from crmsync.services.contact_writes import QuoContactSync, RecordWriter
from crmsync.services.crm_changes import CrmChangeHandler
from crmsync.store import InboxEvent, Source, Store


class FixedDelay(RetryPolicy):
    """Retry after exactly `base_delay` seconds (no jitter), so tests know when."""

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        return self.base_delay


@dataclass
class FakeQuoEvents:
    """Stands in for the activity logger: fails the first `failures` calls."""

    failures: int = 0
    calls: list[tuple[str, bytes]] = field(default_factory=list)

    async def handle(self, event_type: str, body: bytes) -> str:
        self.calls.append((event_type, body))
        if len(self.calls) <= self.failures:
            raise RuntimeError("Quo is down")
        return "noted"


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
        self, quo_events: FakeQuoEvents | None = None, **options: Any
    ) -> tuple[InboxProcessor, Passes]:
        # No idle polling: a test wakes the processor itself when it wants a pass.
        options.setdefault("idle_poll_seconds", 60.0)
        options.setdefault("retry", FixedDelay(base_delay=60.0))
        processor = InboxProcessor(TENANT, store=self.store, adapter=self.attio.adapter,
                                   crm_changes=self.crm_changes, quo_events=quo_events,
                                   wake=self.wake, **options)
        return processor, Passes(processor, self.monkeypatch)

    async def store_event(
        self, source: Source, event_id: str, event_type: str, body: bytes,
        headers: dict[str, str] | None = None,
    ) -> int:
        row = await self.store.inbox.insert(TENANT, source, event_id, event_type, body,
                                            headers or {})
        assert row is not None
        return row

    async def event(self, row: int) -> InboxEvent:
        event = await self.store.inbox.get(TENANT, row)
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

    assert [e.event_id for e in env.handled] == ["evt-1"]
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


async def test_an_event_failing_max_attempts_times_is_marked_failed_and_dead_lettered(
    env: Env,
) -> None:
    """1. a Quo event's handler always fails; at most 2 attempts, no backoff
    2. the processor runs to idle.
    Result: after the second attempt the event is `failed` (never tried a third
    time) and one `webhook_failed` dead letter keeps its body and error."""
    quo_events = FakeQuoEvents(failures=100)
    row = await env.store_event("quo", "EV1", "call.completed", b'{"id": "EV1"}')
    processor, passes = env.processor(quo_events, max_attempts=2,
                                      retry=FixedDelay(base_delay=0.0))

    async with run_actor(processor, until=passes.idle):
        pass

    event = await env.event(row)
    assert (event.state, event.attempts) == ("failed", 2)
    assert len(quo_events.calls) == 2
    (dead,) = await env.store.dead_letters.list(TENANT)
    assert (dead.crm_object, dead.crm_record_id, dead.category) == (
        "webhook", "EV1", "webhook_failed")
    assert (dead.payload, dead.error) == ('{"id": "EV1"}', "RuntimeError: Quo is down")


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
