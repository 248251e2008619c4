"""`crmsync errors` and `crmsync retry` run for real, against a state database made here.

1. a tenant has dead letters in three categories (one already resolved), another tenant
   has its own  2. `errors` lists the unresolved ones by category, `--all` adds the
   resolved one  3. `retry ID` / `retry --all` re-queue (resolve) them, and only this
   tenant's  Result: `errors` is empty afterwards; bad ids and tenants exit 2.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.cli import T0, Cli, write_config

from crmsync.store import open_store


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@dataclass
class Ids:
    validation: list[int]
    phone: int
    resolved: int
    server: int
    beta: int


async def populate(path: Path) -> Ids:
    async with open_store(path, clock=lambda: T0) as store:
        for tenant in ("acme", "beta"):
            await store.tenants.upsert(tenant, "attio")
        add = store.dead_letters.add
        validation = [
            await add("acme", "people", "rec-1", "validation", "{}", "name is required"),
            await add("acme", "people", "rec-2", "validation", "{}", "email [bad] format"),
        ]
        phone = await add("acme", "people", "rec-3", "invalid_phone", "{}", "+1 555 not a phone")
        resolved = await add("acme", "people", "rec-4", "quo_server", "{}", "HTTP 503")
        await store.dead_letters.mark_resolved("acme", resolved)
        server = await add("acme", "people", "rec-5", "quo_server", "{}", "HTTP 500", T0 + 60)
        await store.dead_letters.record_attempt("acme", server, "HTTP 502", T0 + 120)
        beta = await add("beta", "people", "b-1", "validation", "{}", "beta's own")
    return Ids(validation, phone, resolved, server, beta)


async def errors_json(cli: Cli, *extra: str) -> dict[str, object]:
    result = await cli("errors", "--tenant", "acme", "--json", *extra)
    assert result.code == 0, result.err
    report: dict[str, object] = json.loads(result.out)
    return report


async def test_errors_lists_unresolved_by_category(cli: Cli, state_path: Path) -> None:
    ids = await populate(state_path)
    report = await errors_json(cli)
    letters = report["deadLetters"]
    assert isinstance(letters, list)
    assert [(d["category"], d["id"]) for d in letters] == [
        ("invalid_phone", ids.phone),
        ("quo_server", ids.server),
        ("validation", ids.validation[0]),
        ("validation", ids.validation[1]),
    ]
    assert report["counts"] == {"invalid_phone": 1, "quo_server": 1, "validation": 2}
    server = letters[1]
    assert server == {
        "id": ids.server,
        "crmObject": "people",
        "crmRecordId": "rec-5",
        "category": "quo_server",
        "attempts": 2,
        "error": "HTTP 502",
        "createdAt": "2026-11-23T10:00:00Z",
        "nextRetryAt": "2026-11-23T10:02:00Z",
        "resolvedAt": None,
    }

    text = await cli("errors", "--tenant", "acme")
    assert text.code == 0, text.err
    for expected in ("invalid_phone", "rec-3", "+1 555 not a phone", "email [bad] format",
                     "2026-11-23T10:00:00Z", "acme: 4 unresolved dead letters",
                     "validation: 2", "quo_server: 1", "invalid_phone: 1"):
        assert expected in text.out
    assert "HTTP 503" not in text.out  # resolved


async def test_errors_all_includes_resolved(cli: Cli, state_path: Path) -> None:
    ids = await populate(state_path)
    report = await errors_json(cli, "--all")
    letters = report["deadLetters"]
    assert isinstance(letters, list)
    resolved = [d for d in letters if d["resolvedAt"] is not None]
    assert [d["id"] for d in resolved] == [ids.resolved]
    assert report["counts"] == {"invalid_phone": 1, "quo_server": 2, "validation": 2}
    text = await cli("errors", "--tenant", "acme", "--all")
    assert "HTTP 503" in text.out


async def test_retry_one_then_all(cli: Cli, state_path: Path) -> None:
    ids = await populate(state_path)
    one = await cli("retry", "--tenant", "acme", str(ids.phone))
    assert one.code == 0, one.err
    assert "re-queued 1 dead letter (invalid_phone: 1)" in one.out
    assert "crmsync sync --tenant acme" in one.out
    report = await errors_json(cli)
    assert report["counts"] == {"quo_server": 1, "validation": 2}

    again = await cli("retry", "--tenant", "acme", str(ids.phone))
    assert again.code == 0, again.err
    assert "already resolved" in again.out

    everything = await cli("retry", "--tenant", "acme", "--all")
    assert everything.code == 0, everything.err
    assert "re-queued 3 dead letters (quo_server: 1, validation: 2)" in everything.out
    assert (await errors_json(cli))["deadLetters"] == []

    nothing = await cli("retry", "--tenant", "acme", "--all")
    assert nothing.code == 0, nothing.err
    assert "nothing re-queued" in nothing.out

    # The other tenant's dead letter was left alone.
    async with open_store(state_path, readonly=True) as store:
        beta = await store.dead_letters.get("beta", ids.beta)
    assert beta is not None
    assert beta.resolved_at is None


async def test_retry_unknown_error_id_exits_2(cli: Cli, state_path: Path) -> None:
    ids = await populate(state_path)
    for bad in ("999", str(ids.beta)):  # another tenant's id is unknown here
        result = await cli("retry", "--tenant", "acme", bad)
        assert result.code == 2
        assert result.err.splitlines() == [
            f"unknown dead letter {bad} for tenant 'acme' (see `crmsync errors --tenant acme`)"
        ]


async def test_retry_needs_all_or_an_id(cli: Cli, state_path: Path) -> None:
    for args in ((), ("--all", "3"), ("x",)):
        result = await cli("retry", "--tenant", "acme", *args)
        assert result.code == 2


async def test_without_database(cli: Cli, state_path: Path) -> None:
    assert (await errors_json(cli))["deadLetters"] == []
    text = await cli("errors", "--tenant", "acme")
    assert "acme: no unresolved dead letters" in text.out
    result = await cli("retry", "--tenant", "acme", "--all")
    assert (result.code, "nothing re-queued" in result.out) == (0, True)
    result = await cli("retry", "--tenant", "acme", "1")
    assert result.code == 2
    assert not await asyncio.to_thread(state_path.exists)


@pytest.mark.parametrize("command", [["errors"], ["retry", "--all"]])
async def test_unknown_tenant_exits_2(
    cli: Cli, state_path: Path, command: list[str]
) -> None:
    await populate(state_path)
    result = await cli(*command, "--tenant", "nope")
    assert result.code == 2
    assert result.out == ""
    assert result.err.splitlines() == ["unknown tenant 'nope' (configured: acme, beta)"]
