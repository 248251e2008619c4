"""`crmsync inbox` and `crmsync inbox replay`, run for real against a state database made here.

1. tenant `acme` received three webhook events (processed, failed, ignored) and `beta` one
2. `inbox` lists acme's newest first with their state, attempts and errors
3. `inbox replay --since T` and `inbox replay EVENT_ID` (provider id or inbox id) make
   them pending again, only acme's and only the chosen ones
4. with `--no-process` the daemon is named to process them when it starts (applying
   them in the foreground is tests/e2e/test_inbox_replay.py)
Result: the states in the database match; unknown tenants and events exit 2 in one line.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.cli import T0, Cli, write_config

from crmsync.store import Source, open_store


@dataclass
class Ids:
    processed: int
    failed: int
    ignored: int
    beta: int


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


async def populate(path: Path) -> Ids:
    now = [T0]
    async with open_store(path, clock=lambda: now[0]) as store:
        for tenant in ("acme", "beta"):
            await store.tenants.upsert(tenant, "attio")
        inbox = store.inbox

        async def add(tenant: str, source: Source, event_id: str, at: float) -> int:
            now[0] = at
            event_type = "record.updated" if source == "crm" else "message.received"
            row = await inbox.insert(
                tenant, source, event_id, event_type, b"{}", {"Idempotency-Key": event_id}
            )
            assert row is not None
            await inbox.mark_processing(tenant, row)
            return row

        processed = await add("acme", "crm", "idem-1", T0)
        await inbox.mark_processed("acme", processed)
        failed = await add("acme", "quo", "EVfailed", T0 + 60)
        await inbox.mark_processing("acme", failed)
        await inbox.mark_failed("acme", failed, "Attio answered 500")
        ignored = await add("acme", "quo", "EVignored", T0 + 120)
        await inbox.mark_ignored("acme", ignored, "event type not used: call.ringing")
        beta = await add("beta", "crm", "idem-1", T0 + 60)
        await inbox.mark_processed("beta", beta)
    return Ids(processed, failed, ignored, beta)


async def states(path: Path, tenant: str = "acme") -> dict[str, str]:
    async with open_store(path, readonly=True) as store:
        return {e.event_id: e.state for e in await store.inbox.list(tenant)}


async def test_list_newest_first_as_json(cli: Cli, state_path: Path) -> None:
    ids = await populate(state_path)
    result = await cli("inbox", "--tenant", "acme", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["tenant"] == "acme"
    assert report["events"] == [
        {"id": ids.ignored, "source": "quo", "eventId": "EVignored",
         "eventType": "message.received", "state": "ignored", "attempts": 1,
         "receivedAt": "2026-11-23T10:02:00Z", "processedAt": "2026-11-23T10:02:00Z",
         "lastError": "event type not used: call.ringing"},
        {"id": ids.failed, "source": "quo", "eventId": "EVfailed",
         "eventType": "message.received", "state": "failed", "attempts": 2,
         "receivedAt": "2026-11-23T10:01:00Z", "processedAt": None,
         "lastError": "Attio answered 500"},
        {"id": ids.processed, "source": "crm", "eventId": "idem-1",
         "eventType": "record.updated", "state": "processed", "attempts": 1,
         "receivedAt": "2026-11-23T10:00:00Z", "processedAt": "2026-11-23T10:00:00Z",
         "lastError": None},
    ]
    limited = await cli("inbox", "list", "--tenant", "acme", "--limit", "1", "--json")
    assert [e["eventId"] for e in json.loads(limited.out)["events"]] == ["EVignored"]


async def test_list_as_a_table(cli: Cli, state_path: Path) -> None:
    await populate(state_path)
    result = await cli("inbox", "--tenant", "acme")
    assert result.code == 0, result.err
    for text in ("EVignored", "EVfailed", "idem-1", "Attio answered 500", "2026-11-23 10:01"):
        assert text in result.out
    assert result.out.index("EVignored") < result.out.index("idem-1")
    empty = await cli("inbox", "--tenant", "beta", "--limit", "5")
    assert "idem-1" in empty.out


async def test_list_before_any_state_exists(cli: Cli, state_path: Path) -> None:
    result = await cli("inbox", "--tenant", "acme")
    assert (result.code, result.out.strip()) == (0, "acme: no webhook events received")
    assert not await asyncio.to_thread(state_path.exists)


@pytest.mark.parametrize("since", ["2026-11-23T10:01:00Z", str(int(T0 + 60)),
                                   "2026-11-23T11:01:00+01:00"])
async def test_replay_since(cli: Cli, state_path: Path, since: str) -> None:
    await populate(state_path)
    result = await cli("inbox", "replay", "--tenant", "acme", "--since", since, "--no-process")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "acme: 2 webhook events marked pending for replay",
        "the daemon (`crmsync run`) processes them when it starts",
    ]
    assert await states(state_path) == {
        "EVignored": "pending", "EVfailed": "pending", "idem-1": "processed",
    }
    assert await states(state_path, "beta") == {"idem-1": "processed"}  # another tenant's


@pytest.mark.parametrize("ref", ["EVfailed", "failed-row-id"])
async def test_replay_one_event(cli: Cli, state_path: Path, ref: str) -> None:
    ids = await populate(state_path)
    ref = str(ids.failed) if ref == "failed-row-id" else ref
    result = await cli("inbox", "replay", "--tenant", "acme", ref, "--no-process")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == "acme: 1 webhook event marked pending for replay"
    assert await states(state_path) == {
        "EVignored": "ignored", "EVfailed": "pending", "idem-1": "processed",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inbox", "--tenant", "ghost"], "unknown tenant 'ghost' (configured: acme, beta)"),
        (["inbox", "replay", "--tenant", "ghost", "EV1"], "unknown tenant 'ghost'"),
        (["inbox", "replay", "--tenant", "acme", "EVnever"], "unknown webhook event 'EVnever'"),
        (["inbox", "replay", "--tenant", "acme", "999"], "unknown webhook event '999'"),
        (["inbox", "replay", "--tenant", "beta", "EVfailed"], "unknown webhook event"),
        (["inbox"], "--tenant ID argument is required"),
    ],
)
async def test_unknowns_exit_2_in_one_line(
    cli: Cli, state_path: Path, args: list[str], message: str
) -> None:
    await populate(state_path)
    result = await cli(*args)
    assert result.code == 2
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert await states(state_path) == {
        "EVignored": "ignored", "EVfailed": "failed", "idem-1": "processed",
    }


@pytest.mark.parametrize(
    "args",
    [
        ["inbox", "replay", "--tenant", "acme"],
        ["inbox", "replay", "--tenant", "acme", "--since", "last tuesday"],
        ["inbox", "replay", "--tenant", "acme", "--since", "nan"],
        ["inbox", "replay", "--tenant", "acme", "--since", "0", "EV1"],
        ["inbox", "--tenant", "acme", "--limit", "0"],
    ],
)
async def test_bad_usage_exits_2(cli: Cli, state_path: Path, args: list[str]) -> None:
    result = await cli(*args)
    assert result.code == 2
    assert "usage:" in result.err
