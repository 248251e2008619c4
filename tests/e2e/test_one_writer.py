"""End to end: one writer per state file (the state lock beside the SQLite file).

`crmsync run` holds `<state_path>.lock` for as long as it runs, and so does every CLI
command that writes the state (`sync`, `retry`, `inbox replay`) while it runs. A second
writer refuses with exit 2 and one line naming the holder; readers (`status`,
`mappings`, `errors`, `inbox`, `check-config`) keep working beside it. The lock is the
kernel's (`flock`): a SIGKILLed holder leaves nothing stale behind.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.child import Child
from support.cli import run_cli
from support.e2e import TENANT, e2e_env
from support.live import free_port, live_env

pytestmark = pytest.mark.slow

EXIT_USAGE = 2


def one_line(err: str) -> str:
    """stderr of a refused command: exactly one line, returned."""
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def second_listener(config_path: Path) -> Path:
    """A copy of the daemon's config on another port, same state file."""
    text = config_path.read_text()
    port = free_port()
    copy = config_path.with_name("second.toml")
    copy.write_text(re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}",
                           re.sub(r"^port = \d+$", f"port = {port}", text, flags=re.M)))
    return copy


async def test_writers_refuse_beside_the_daemon_and_readers_keep_working(
    tmp_path: Path,
) -> None:
    """1. `crmsync run` against the simulators, until the tenant is live
    2. `crmsync sync`, `crmsync retry --all`, `crmsync inbox replay --since 0` and
       `crmsync inbox replay --no-process` against the same config
    3. `status --json`, `mappings`, `errors`, `inbox`, `check-config`
    4. a second `crmsync run` on another port but the same state file
    Result: every writer (2) exits 2 with one line that names the daemon's pid and says
    to stop it first; no Quo request is made by them; every reader (3) exits 0 and
    status shows the tenant running; the second daemon (4) exits 2 with one line
    naming the first one's pid. The first daemon is unaffected and stops with 0."""
    async with live_env(tmp_path, people=20) as env, env.daemon() as daemon:
        e2e = env.e2e
        pid = daemon.process.pid
        requests = e2e.quo.stats.total_requests
        for args in (
            ("sync", "--tenant", TENANT),
            ("retry", "--tenant", TENANT, "--all"),
            ("inbox", "replay", "--tenant", TENANT, "--since", "0"),
            ("inbox", "replay", "--tenant", TENANT, "--since", "0", "--no-process"),
        ):
            result = await e2e.cli(*args, within=20)
            assert result.code == EXIT_USAGE, result.describe()
            line = one_line(result.err)
            assert f"pid {pid}" in line, line
            assert "crmsync run" in line and "stop it first" in line, line
        assert e2e.quo.stats.total_requests == requests  # the writers did nothing

        status = await e2e.status()
        assert (status["state"], status["phase"]) == ("running", "live"), status
        for args in (
            ("mappings", "--tenant", TENANT),
            ("errors", "--tenant", TENANT),
            ("inbox", "--tenant", TENANT),
            ("check-config",),
        ):
            result = await e2e.cli(*args, within=20)
            assert result.code == 0, result.describe()

        second = second_listener(e2e.config_path)
        result = await run_cli("run", "-c", str(second), env=e2e.env, within=20)
        assert result.code == EXIT_USAGE, result.describe()
        line = one_line(result.err)
        assert f"pid {pid}" in line and "crmsync run" in line, line
        assert daemon.running, daemon.output


async def test_the_daemon_refuses_to_start_during_a_foreground_sync(tmp_path: Path) -> None:
    """1. `crmsync sync` of 300 people, Quo at 20 requests/s (15 s of work)
    2. once Quo holds a contact: `crmsync run` and a second `crmsync sync` on the same
       state file
    3. the first sync runs to its end
    Result: both (2) exit 2 with one line naming the running sync's pid (`crmsync
    sync --tenant acme`); the sync exits 0 with every person in Quo exactly once."""
    async with e2e_env(tmp_path, people=300, rps=20) as e2e:
        port = free_port()
        daemon_config = e2e.config_path.with_name("daemon.toml")
        daemon_config.write_text(
            e2e.config_path.read_text()
            + f'\n[http]\nhost = "127.0.0.1"\nport = {port}\n'
        )
        async with Child.spawn("sync", "--tenant", TENANT, "-c", str(e2e.config_path),
                               env=e2e.env, cwd=tmp_path) as sync:
            await sync.wait_for(lambda: len(e2e.quo.contacts.contacts) > 0, within=30,
                                message="a contact in Quo")
            for args in (("run", "-c", str(daemon_config)),
                         ("sync", "--tenant", TENANT, "-c", str(e2e.config_path))):
                result = await run_cli(*args, env=e2e.env, within=20)
                assert result.code == EXIT_USAGE, result.describe()
                line = one_line(result.err)
                assert f"pid {sync.pid}" in line, line
                assert f"crmsync sync --tenant {TENANT}" in line, line
            assert await sync.exit_code(within=60) == 0, sync.describe()
            sync.assert_clean()
        by_external_id = e2e.contacts_by_external_id()
        assert len(by_external_id) == 300
        assert all(len(contacts) == 1 for contacts in by_external_id.values())


async def test_a_sigkilled_daemon_leaves_no_stale_lock_and_status_says_stopped(
    tmp_path: Path,
) -> None:
    """1. `crmsync run` until the tenant is live (its row says running)
    2. SIGKILL it: no cleanup runs
    3. `crmsync status --json`, then `crmsync retry --tenant acme --all`
    Result: status reports the tenant `stopped` (phase and counts as stored: live, 20
    created); retry is not refused (exit 0)."""
    async with live_env(tmp_path, people=20) as env:
        daemon = await env.start()
        before = await daemon.tenant_status()
        assert (before["state"], before["phase"]) == ("running", "live")
        await daemon.kill()

        status = await env.e2e.status()
        assert (status["state"], status["phase"]) == ("stopped", "live"), status
        assert status["counts"] == before["counts"]
        assert status["counts"]["created"] == 20
        result = await env.e2e.cli("retry", "--tenant", TENANT, "--all", within=20)
        assert result.code == 0, result.describe()
        payload = await env.e2e.cli("status", "--json")
        assert json.loads(payload.out)["tenants"][0]["state"] == "stopped"

