"""`crmsync status` run for real, in a subprocess, against a state database made here.

The database is filled through the store API (with a fixed clock, so every time is
known), then the CLI reads it read-only. Checks the INTERFACE §2 JSON shape and values,
the no-database case (all stopped, nothing created) and the table output.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from support.cli import T0, Cli

from crmsync.store import DAEMON_COMMAND, hold_state_lock, open_store

CONFIG = """\
[daemon]
state_path = "{state}"

[[tenants]]
id = "acme"
crm = "attio"
quo_api_key = "env:QUO_KEY"
crm_api_key = "env:CRM_KEY"

[[tenants]]
id = "beta"
crm = "pipedrive"
quo_api_key = "env:QUO_KEY"
crm_api_key = "env:CRM_KEY"

[[tenants]]
id = "gamma"
crm = "hubspot"
quo_api_key = "env:QUO_KEY"
crm_api_key = "env:CRM_KEY"
"""

TENANT_KEYS = {
    "id", "crm", "state", "phase", "initialSyncCompletedAt", "lastSuccessAt", "lastError",
    "counts", "deadLetters", "deadLettersByCategory", "watermark", "configured", "lastRun",
    "crmChanges", "replica",
}
COUNT_KEYS = ["fetched", "created", "updated", "linked", "unchanged", "failed", "deleted"]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "crmsync.db"
    (tmp_path / "crmsync.toml").write_text(CONFIG.format(state=path))
    return path


async def populate(path: Path) -> None:
    clock = Clock()
    async with open_store(path, clock=clock) as store:
        await store.tenants.upsert("acme", "attio")
        await store.tenants.mark_initial_sync_completed("acme", T0)
        await store.tenants.mark_success("acme", T0 + 3600.25)
        # An error after the last success (a success clears older errors).
        await store.tenants.set_state("acme", "running", phase="live", last_error="429 from Quo")
        old = await store.runs.create("acme", "initial")
        await store.runs.transition("acme", old, "running")
        await store.runs.add_counts("acme", old, fetched=500, created=500)
        await store.runs.transition("acme", old, "completed")
        clock.now = T0 + 3000
        latest = await store.runs.create("acme", "incremental")
        clock.now = T0 + 3001
        await store.runs.transition("acme", latest, "running")
        await store.runs.add_counts(
            "acme", latest, fetched=10, created=3, updated=2, linked=1, unchanged=2, failed=1,
            deleted=1,
        )
        clock.now = T0 + 3600
        await store.runs.transition("acme", latest, "completed")
        await store.checkpoints.set("acme", "people", "watermark", "2026-11-23T09:59:00Z")
        await store.checkpoints.set("acme", "companies", "cursor", "page-7")
        for n, category in enumerate(("validation", "validation", "invalid_phone", "quo_server")):
            await store.dead_letters.add("acme", "people", f"rec-{n}", category, "{}", "bad")
        resolved = await store.dead_letters.add("acme", "people", "r9", "quo_server", "{}", "x")
        await store.dead_letters.mark_resolved("acme", resolved)
        # beta: registered by the daemon, nothing synced yet.
        await store.tenants.upsert("beta", "pipedrive")
        # zeta: in the database only (removed from the config since).
        await store.tenants.upsert("zeta", "hubspot")
        await store.tenants.set_state("zeta", "parked", last_error="restart budget spent")


async def test_status_json_shape_and_values(cli: Cli, state_path: Path) -> None:
    await populate(state_path)
    async with hold_state_lock(state_path, command=DAEMON_COMMAND):  # as a live daemon
        result = await cli("status", "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert list(report) == ["tenants"]
    tenants = {t["id"]: t for t in report["tenants"]}
    assert [t["id"] for t in report["tenants"]] == ["acme", "beta", "gamma", "zeta"]
    for tenant in report["tenants"]:
        assert set(tenant) == TENANT_KEYS
        assert list(tenant["counts"]) == COUNT_KEYS

    acme = tenants["acme"]
    assert acme["crm"] == "attio"
    assert acme["state"] == "running"
    assert acme["phase"] == "live"
    assert acme["initialSyncCompletedAt"] == "2026-11-23T10:00:00Z"
    assert acme["lastSuccessAt"] == "2026-11-23T11:00:00.250Z"
    assert acme["lastError"] == "429 from Quo"
    # From the latest run, not summed over runs.
    assert acme["counts"] == {
        "fetched": 10, "created": 3, "updated": 2, "linked": 1, "unchanged": 2, "failed": 1,
        "deleted": 1,
    }
    assert acme["deadLetters"] == 4
    assert acme["deadLettersByCategory"] == {"invalid_phone": 1, "quo_server": 1, "validation": 2}
    assert acme["watermark"] == {
        "companies": {"cursor": "page-7"},
        "people": {"watermark": "2026-11-23T09:59:00Z"},
    }
    assert acme["configured"] is True
    assert acme["lastRun"] == {
        "id": 2, "kind": "incremental", "state": "completed",
        "startedAt": "2026-11-23T10:50:01Z", "finishedAt": "2026-11-23T11:00:00Z",
        "error": None,
    }

    beta = tenants["beta"]
    assert (beta["state"], beta["phase"], beta["crm"]) == ("starting", "setup", "pipedrive")
    assert beta["initialSyncCompletedAt"] is None
    assert beta["lastSuccessAt"] is None
    assert beta["counts"] == dict.fromkeys(COUNT_KEYS, 0)
    assert (beta["deadLetters"], beta["watermark"], beta["lastRun"]) == (0, None, None)

    gamma = tenants["gamma"]  # configured, never seen by the daemon
    assert (gamma["state"], gamma["phase"], gamma["crm"]) == ("stopped", "setup", "hubspot")
    assert gamma["counts"] == dict.fromkeys(COUNT_KEYS, 0)

    zeta = tenants["zeta"]
    assert (zeta["state"], zeta["configured"], zeta["crm"]) == ("parked", False, "hubspot")
    assert zeta["lastError"] == "restart budget spent"


async def test_status_without_database(cli: Cli, state_path: Path) -> None:
    result = await cli("status", "--json")
    assert result.code == 0, result.err
    tenants = json.loads(result.out)["tenants"]
    assert [t["id"] for t in tenants] == ["acme", "beta", "gamma"]
    for tenant in tenants:
        assert set(tenant) == TENANT_KEYS
        assert tenant["state"] == "stopped"
        assert tenant["counts"] == dict.fromkeys(COUNT_KEYS, 0)
        assert tenant["deadLetters"] == 0
        assert tenant["lastSuccessAt"] is None
        assert tenant["watermark"] is None
    # A read command never creates the state file (nor its directory).
    assert not await asyncio.to_thread(state_path.parent.exists)


async def test_status_table(cli: Cli, state_path: Path) -> None:
    await populate(state_path)
    async with hold_state_lock(state_path, command=DAEMON_COMMAND):  # as a live daemon
        result = await cli("status")
    assert result.code == 0, result.err
    for text in ("acme", "running", "gamma", "stopped", "not configured", "429 from Quo"):
        assert text in result.out


async def test_status_without_a_live_process_shows_stale_rows_as_stopped(
    cli: Cli, state_path: Path
) -> None:
    """1. the state database says what a SIGKILLed (or Ctrl-C'd) `crmsync sync` left:
       acme `running` in phase `initial_sync`, its run still `running` with 70 created
       on a committed page; beta `starting`, zeta `parked` (a daemon that died)
    2. no process holds the state lock: `crmsync status --json`, then `crmsync status`
    Result: acme, beta and zeta are `stopped`; acme keeps its phase (`initial_sync`),
    counts (70 created) and last error; its last run shows as `failed` with error
    `interrupted` (what the next pass records); the table says `interrupted`."""
    async with open_store(state_path, clock=Clock()) as store:
        await store.tenants.upsert("acme", "attio")
        await store.tenants.set_state("acme", "running", phase="initial_sync",
                                      last_error="429 from Quo")
        run = await store.runs.create("acme", "initial")
        await store.runs.transition("acme", run, "running")
        await store.runs.add_counts("acme", run, fetched=70, created=70)
        await store.tenants.upsert("beta", "pipedrive")
        await store.tenants.upsert("zeta", "hubspot")
        await store.tenants.set_state("zeta", "parked", last_error="credentials rejected")

    result = await cli("status", "--json")
    assert result.code == 0, result.err
    tenants = {t["id"]: t for t in json.loads(result.out)["tenants"]}
    acme = tenants["acme"]
    assert (acme["state"], acme["phase"]) == ("stopped", "initial_sync"), acme
    assert acme["counts"]["created"] == acme["counts"]["fetched"] == 70
    assert acme["lastError"] == "429 from Quo"
    assert (acme["lastRun"]["state"], acme["lastRun"]["error"]) == ("failed", "interrupted")
    assert acme["lastRun"]["finishedAt"] is None
    assert tenants["beta"]["state"] == "stopped"
    assert (tenants["zeta"]["state"], tenants["zeta"]["lastError"]) == (
        "stopped", "credentials rejected")

    table = await cli("status")
    assert table.code == 0, table.err
    assert "interrupted" in table.out
    assert "running" not in table.out


async def test_status_bad_config_exits_2(tmp_path: Path, cli: Cli, state_path: Path) -> None:
    path = tmp_path / "crmsync.toml"
    config = await asyncio.to_thread(path.read_text)
    bad = config.replace('crm = "hubspot"', 'crm = "atio"')
    await asyncio.to_thread(path.write_text, bad)
    result = await cli("status", "--json")
    assert result.code == 2
    assert "tenants[2].crm: unknown CRM" in result.err
    assert "atio" in result.err
    assert result.out == ""
