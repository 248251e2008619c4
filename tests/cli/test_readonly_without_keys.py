"""The read-only commands need no API key; the commands that call the APIs still do.

1. a config whose keys are `env:` references (acme) and a `file:%d/` one (beta), and a
   state database with a mapping, a dead letter and a webhook event
2. every command through the real CLI, with none of those variables set and no
   CREDENTIALS_DIRECTORY
Result: `status`, `mappings`, `errors` and `inbox` answer from the state as usual;
`check-config`, `run`, `sync`, `retry` and `inbox replay` exit 2 naming each missing
secret, one line each, as before.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.cli import T0, Result, cli_env, run_cli

from crmsync.store import Mapping, open_store

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
crm = "attio"
quo_api_key = "file:%d/beta-quo"
crm_api_key = "file:%d/beta-attio"
"""

MISSING = [
    "crmsync.toml: tenants[0].quo_api_key: environment variable QUO_KEY is not set",
    "crmsync.toml: tenants[0].crm_api_key: environment variable CRM_KEY is not set",
    "crmsync.toml: tenants[1].quo_api_key: file:%d/beta-quo uses %d but "
    "CREDENTIALS_DIRECTORY is not set (systemd sets it for LoadCredential=)",
    "crmsync.toml: tenants[1].crm_api_key: file:%d/beta-attio uses %d but "
    "CREDENTIALS_DIRECTORY is not set (systemd sets it for LoadCredential=)",
]


@pytest.fixture
async def state(tmp_path: Path) -> Path:
    path = tmp_path / "crmsync.db"
    (tmp_path / "crmsync.toml").write_text(CONFIG.format(state=path))
    async with open_store(path, clock=lambda: T0) as store:
        await store.tenants.upsert("acme", "attio")
        await store.mappings.upsert(Mapping(
            tenant_id="acme", crm_object="people", crm_record_id="rec-1",
            quo_contact_id="contact-1", entity_type="person", sync_method="initial",
            action="created", content_hash="hash-1", last_synced_at=T0,
        ))
        await store.dead_letters.add("acme", "people", "rec-2", "quo_validation", "{}", "400")
        row = await store.inbox.insert("acme", "quo", "EVone", "message.received", b"{}", {})
        assert row is not None
    return path


async def without_keys(tmp_path: Path, *args: str) -> Result:
    """`crmsync ARGS -c crmsync.toml` with no key variable and no CREDENTIALS_DIRECTORY."""
    env = {k: v for k, v in cli_env({"COLUMNS": "200"}).items()
           if k not in ("QUO_KEY", "CRM_KEY", "CREDENTIALS_DIRECTORY")}
    return await run_cli(*args, "-c", "crmsync.toml", env=env, cwd=tmp_path)


async def test_read_only_commands_answer_without_any_key(tmp_path: Path, state: Path) -> None:
    status = await without_keys(tmp_path, "status", "--json")
    assert status.code == 0, status.describe()
    assert [t["id"] for t in json.loads(status.out)["tenants"]] == ["acme", "beta"]
    table = await without_keys(tmp_path, "status")
    assert table.code == 0, table.describe()
    assert "acme (attio)" in table.out

    mappings = await without_keys(tmp_path, "mappings", "--tenant", "acme")
    assert mappings.code == 0, mappings.describe()
    assert [json.loads(line)["quoContactId"] for line in mappings.out.splitlines()] == [
        "contact-1"]

    errors = await without_keys(tmp_path, "errors", "--tenant", "acme", "--json")
    assert errors.code == 0, errors.describe()
    assert json.loads(errors.out)["counts"] == {"quo_validation": 1}

    inbox = await without_keys(tmp_path, "inbox", "--tenant", "acme", "--json")
    assert inbox.code == 0, inbox.describe()
    assert [e["eventId"] for e in json.loads(inbox.out)["events"]] == ["EVone"]
    listing = await without_keys(tmp_path, "inbox", "list", "--tenant", "beta")
    assert (listing.code, listing.out.strip()) == (0, "beta: no webhook events received")


@pytest.mark.parametrize("args", [
    ["check-config"],
    ["run"],
    ["sync", "--tenant", "acme"],
    ["retry", "--tenant", "acme", "--all"],
    ["inbox", "replay", "--tenant", "acme", "--since", "0"],
], ids=lambda args: " ".join(args[:2]))
async def test_commands_that_call_the_apis_still_need_every_key(
    tmp_path: Path, state: Path, args: list[str]
) -> None:
    result = await without_keys(tmp_path, *args)
    assert result.code == 2, result.describe()
    assert result.err.splitlines() == MISSING
    assert result.out == ""
