"""The CLI against a PostgreSQL state (INTERFACE §10: the same commands work against
either store), through the real CLI in a subprocess.

1. a config whose `daemon.state_url` is `env:CRMSYNC_STATE_URL`, a URL with a password
   (the test cluster trusts every login, so any password works), and a state with a
   mapping, a dead letter and a webhook event
2. the read-only commands, without the API keys
Result: `status`, `mappings`, `errors` and `inbox` answer from PostgreSQL; `check-config`
shows the reference and the URL with its password masked; the password never shows
(`run_cli` fails a run whose output holds any environment value containing "SECRET").
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support.cli import T0, Result, cli_env, run_cli
from support.postgres import StateFactory, postgresql_only

from crmsync.store import Mapping, open_store

pytestmark = postgresql_only
PASSWORD = "pw-SECRET-4242"
QUO_KEY = "quo-SECRET-1"
#: acme's lease group (`group_of`: the Quo key's fingerprint) and a replica holding it
ACME_GROUP = "quo:" + hashlib.sha256(QUO_KEY.encode()).hexdigest()[:16]
REPLICA = "replica-host:4242"
CONFIG = """\
[daemon]
state_url = "env:CRMSYNC_STATE_URL"

[[tenants]]
id = "acme"
crm = "attio"
quo_api_key = "env:QUO_KEY"
crm_api_key = "env:CRM_KEY"
"""


@pytest.fixture
async def url(state: StateFactory, tmp_path: Path) -> str:
    """The state's URL, with a password; crmsync.toml names it by reference."""
    location = await state("crmsync")
    assert isinstance(location, str)
    (tmp_path / "crmsync.toml").write_text(CONFIG)
    return location.replace("crmsync_test@", f"crmsync_test:{PASSWORD}@", 1)


@pytest.fixture
async def populated(url: str) -> str:
    async with open_store(url, clock=lambda: T0) as store:
        await store.tenants.upsert("acme", "attio")
        await store.tenants.set_state("acme", "running", phase="live")
        await store.mappings.upsert(Mapping(
            tenant_id="acme", crm_object="people", crm_record_id="rec-1",
            quo_contact_id="contact-1", entity_type="person", sync_method="initial",
            action="created", content_hash="hash-1", last_synced_at=T0,
        ))
        await store.dead_letters.add("acme", "people", "rec-2", "quo_validation", "{}", "400")
        assert await store.inbox.insert("acme", "quo", "EVone", "message.received", b"{}", {})
        # A replica runs acme: its Quo key's lease is current.
        assert await store.leases.acquire(
            ACME_GROUP, REPLICA, ["acme"], now=await store.leases.clock(), seconds=600
        ) == 1
    return url


async def crmsync(tmp_path: Path, url: str, *args: str, keys: bool = False) -> Result:
    env = {k: v for k, v in cli_env({"COLUMNS": "200", "CRMSYNC_STATE_URL": url}).items()
           if keys or k not in ("QUO_KEY", "CRM_KEY")}
    if keys:
        env |= {"QUO_KEY": QUO_KEY, "CRM_KEY": "crm-SECRET-2"}
    return await run_cli(*args, "-c", "crmsync.toml", env=env, cwd=tmp_path,
                         secrets=[PASSWORD])


async def test_read_only_commands_read_a_postgresql_state(
    tmp_path: Path, populated: str
) -> None:
    status = await crmsync(tmp_path, populated, "status", "--json")
    assert status.code == 0, status.describe()
    (acme,) = json.loads(status.out)["tenants"]
    # No file lock on PostgreSQL: a tenant is live while its group's lease is current.
    assert (acme["id"], acme["state"], acme["phase"], acme["deadLetters"], acme["replica"]) \
        == ("acme", "running", "live", 1, REPLICA)
    table = await crmsync(tmp_path, populated, "status")
    assert table.code == 0, table.describe()
    assert "acme (attio)" in table.out
    assert f"on {REPLICA}" in table.out

    mappings = await crmsync(tmp_path, populated, "mappings", "--tenant", "acme")
    assert mappings.code == 0, mappings.describe()
    assert [json.loads(line)["quoContactId"] for line in mappings.out.splitlines()] == [
        "contact-1"]
    errors = await crmsync(tmp_path, populated, "errors", "--tenant", "acme", "--json")
    assert errors.code == 0, errors.describe()
    assert json.loads(errors.out)["counts"] == {"quo_validation": 1}
    inbox = await crmsync(tmp_path, populated, "inbox", "--tenant", "acme", "--json")
    assert inbox.code == 0, inbox.describe()
    assert [e["eventId"] for e in json.loads(inbox.out)["events"]] == ["EVone"]


async def test_check_config_masks_the_password(tmp_path: Path, url: str) -> None:
    result = await crmsync(tmp_path, url, "check-config", keys=True)
    assert result.code == 0, result.describe()
    (line,) = [line for line in result.out.splitlines() if line.startswith("state_url")]
    assert line.startswith('state_url = "env:CRMSYNC_STATE_URL"  # postgresql://crmsync_test:***@')
    assert "# state_path is not used: state_url is set" in result.out


async def test_a_database_crmsync_never_used_is_no_state_yet(tmp_path: Path, url: str) -> None:
    """Read commands never create the schema: a fresh database reads as an empty state."""
    status = await crmsync(tmp_path, url, "status", "--json")
    assert status.code == 0, status.describe()
    (acme,) = json.loads(status.out)["tenants"]
    assert acme["lastSuccessAt"] is None
    async with open_store(url, readonly=False) as store:  # the schema is still to create
        assert store.applied_migrations


async def test_an_unreachable_database_is_one_line_without_the_password(
    tmp_path: Path, backend: str
) -> None:
    (tmp_path / "crmsync.toml").write_text(CONFIG)
    url = f"postgresql://crmsync:{PASSWORD}@127.0.0.1:1/crmsync"
    result = await crmsync(tmp_path, url, "status")
    assert result.code == 1, result.describe()
    (line,) = result.err.splitlines()
    assert line.startswith(
        "cannot connect to state database postgresql://crmsync:***@127.0.0.1:1/crmsync: ")


async def test_a_bad_state_url_is_a_config_error_naming_the_key(
    tmp_path: Path, backend: str
) -> None:
    (tmp_path / "crmsync.toml").write_text(CONFIG)
    result = await crmsync(tmp_path, f"mysql://crmsync:{PASSWORD}@db/crmsync", "status")
    assert result.code == 2, result.describe()
    assert result.err.splitlines() == [
        "crmsync.toml: daemon.state_url: env:CRMSYNC_STATE_URL: the URL there must be a "
        "PostgreSQL URL (postgresql://USER@HOST[:PORT]/DATABASE), got "
        "'mysql://crmsync:***@db/crmsync'"
    ]


async def test_sync_is_refused_while_a_replica_runs_the_tenant(
    tmp_path: Path, populated: str
) -> None:
    """Two writers of one tenant would break its limiter and its checkpoints: `crmsync
    sync` takes the tenant's lease, and a replica holding it refuses the command."""
    result = await crmsync(tmp_path, populated, "sync", "--tenant", "acme", keys=True)
    assert result.code == 2, result.describe()
    assert result.err.strip().splitlines()[-1] == (
        f"tenant acme is run by {REPLICA} (the lease of its Quo key's tenants); "
        "a running replica syncs it itself (POST /api/tenants/acme/sync), or stop the "
        "replicas first"
    )


async def test_status_shows_a_tenant_whose_lease_ended_as_stopped(
    tmp_path: Path, populated: str
) -> None:
    async with open_store(populated) as store:
        now = await store.leases.clock()
        assert await store.leases.release(ACME_GROUP, REPLICA, 1, now=now, grace=0)
    status = await crmsync(tmp_path, populated, "status", "--json")
    (acme,) = json.loads(status.out)["tenants"]
    assert (acme["state"], acme["replica"]) == ("stopped", None)
