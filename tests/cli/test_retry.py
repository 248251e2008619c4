"""`crmsync retry` on webhook dead letters: the inbox event is re-queued, not just closed.

Real CLI in a subprocess, against a state database made here (`tests/cli/test_errors.py`
covers the sync dead letters).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from support.cli import T0, Cli, write_config

from crmsync.store import Store, open_store

BODY = b'{"id": "EV1", "type": "message.received", "data": {"object": {"text": "hi"}}}'


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@dataclass
class Ids:
    event: int
    letter: int
    record_letter: int
    beta_event: int
    beta_letter: int


async def _fail(store: Store, tenant: str, event_id: str) -> tuple[int, int]:
    """An SMS event that failed its retries, as the inbox processor leaves it."""
    row = await store.inbox.insert(tenant, "quo", event_id, "message.received", BODY, {})
    assert row is not None
    assert await store.inbox.claim(tenant, row)
    assert await store.inbox.mark_failed(tenant, row, "AttioServerError: HTTP 503")
    letter = await store.dead_letters.add(
        tenant, "webhook", event_id, "webhook_failed", BODY.decode(),
        "AttioServerError: HTTP 503",
    )
    return row, letter


async def populate(path: Path) -> Ids:
    async with open_store(path, clock=lambda: T0) as store:
        for tenant in ("acme", "beta"):
            await store.tenants.upsert(tenant, "attio")
        event, letter = await _fail(store, "acme", "EV1")
        record_letter = await store.dead_letters.add(
            "acme", "people", "rec-1", "validation", "{}", "name is required"
        )
        beta_event, beta_letter = await _fail(store, "beta", "EV1")  # same provider id
    return Ids(event, letter, record_letter, beta_event, beta_letter)


@pytest.mark.parametrize("which", ["--all", "id"])
async def test_retry_requeues_a_failed_webhook_event(
    cli: Cli, state_path: Path, which: str
) -> None:
    """1. an SMS event failed its retries: inbox row `failed`, a `webhook_failed` dead
       letter (and a sync dead letter beside it); tenant beta has the same
    2. `crmsync retry --tenant acme --all` (or with the dead letter's id)
    Result: the dead letter is resolved and the inbox row is pending again, due now,
    with a fresh budget (attempts 0), for the daemon or `crmsync inbox replay` to
    apply; the output says so. Beta's event and dead letter are untouched.
    (Regression test: retry only resolved the dead letter; the row stayed `failed`
    and the SMS note was never written.)"""
    ids = await populate(state_path)
    args = ["--all"] if which == "--all" else [str(ids.letter)]
    result = await cli("retry", "--tenant", "acme", *args)
    assert result.code == 0, result.describe()

    async with open_store(state_path, readonly=True) as store:
        event = await store.inbox.get("acme", ids.event)
        assert event is not None
        assert (event.state, event.attempts, event.processed_at) == ("pending", 0, None)
        assert event.next_attempt_at == event.queued_at > T0
        assert [e.id for e in await store.inbox.next_pending("acme", 10)] == [ids.event]
        letter = await store.dead_letters.get("acme", ids.letter)
        assert letter is not None and letter.resolved_at is not None
        record = await store.dead_letters.get("acme", ids.record_letter)
        assert record is not None
        assert (record.resolved_at is not None) == (which == "--all")
        beta = await store.inbox.get("beta", ids.beta_event)
        assert beta is not None and beta.state == "failed"
        beta_letter = await store.dead_letters.get("beta", ids.beta_letter)
        assert beta_letter is not None and beta_letter.resolved_at is None

    assert "webhook_failed: 1" in result.out
    assert "1 webhook event is pending again" in result.out, result.out
    again = await cli("retry", "--tenant", "acme", str(ids.letter))
    assert again.code == 0, again.describe()
    assert "already resolved" in again.out
