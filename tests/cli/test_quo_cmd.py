"""`crmsync quo migrate-webhooks --tenant ID`, the real CLI in a subprocess.

1. a daemon on `quo.webhooks = "legacy"` registered the tenant's four legacy webhooks
   and was stopped; the config now says "2026-03-30"
2. `crmsync quo migrate-webhooks --tenant acme`
Result: exit 0, one line per step (create, test, verified, enable, delete), one
enabled 2026-03-30 webhook and no legacy webhook left; the test event was verified by
the command's own listener and waits in the inbox; a daemon started afterwards finds
nothing to do. Refused with one line (exit 2) beside a running daemon, with a legacy
config or without `http.public_url`; a test event nobody verifies ends with exit 1,
the step and the reason, and the legacy webhooks untouched.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.live import TENANT, LiveEnv, free_port, inbox, live_env

from crmsync.store import DAEMON_COMMAND
from crmsync.store.lock import hold_state_lock

pytestmark = pytest.mark.slow

FAST_RETRIES = (0.0, 0.2)


def ours_legacy(env: LiveEnv) -> list[str]:
    url = f"{env.base_url}/webhooks/{TENANT}/quo"
    return sorted(w["id"] for w in env.quo.webhooks.values() if w["url"] == url)


def ours_v2(env: LiveEnv) -> list[dict[str, object]]:
    url = f"{env.base_url}/webhooks/{TENANT}/quo"
    return [w for w in env.quo.webhooks_v2.values() if w["url"] == url]


def use_new_system(env: LiveEnv) -> None:
    path = env.e2e.config_path
    path.write_text(path.read_text().replace('webhooks = "legacy"', 'webhooks = "2026-03-30"'))


@pytest.fixture
async def legacy_tenant(tmp_path: Path) -> AsyncIterator[LiveEnv]:
    """A tenant whose daemon ran on legacy webhooks and is stopped now."""
    async with live_env(tmp_path, people=5, quo_webhooks="legacy",
                        webhook_retry_schedule=FAST_RETRIES) as env:
        async with env.daemon():
            pass
        assert len(ours_legacy(env)) == 4
        assert ours_v2(env) == []
        use_new_system(env)
        yield env


async def test_migrate_prints_each_step_and_leaves_no_legacy_webhook(
    legacy_tenant: LiveEnv,
) -> None:
    env = legacy_tenant
    legacy = ours_legacy(env)
    result = await env.e2e.cli("quo", "migrate-webhooks", "--tenant", TENANT)
    assert result.code == 0, result.describe()
    lines = result.out.splitlines()
    steps = [re.sub(r"^acme: ([a-z]+)[: ].*$", r"\1", line) for line in lines]
    assert steps == ["listening", "legacy", "create", "test", "verified", "enable",
                     "delete", "done"], result.out
    assert sorted(lines[1].rsplit(": ", 1)[1].split(", ")) == legacy
    (webhook,) = ours_v2(env)
    assert webhook["status"] == "enabled"
    assert f"webhook {webhook['id']} created, disabled" in lines[2]
    assert ours_legacy(env) == []
    assert lines[-1] == (f"acme: done: webhook {webhook['id']} (2026-03-30) delivers;"
                         " no legacy webhook left")
    assert result.err == ""
    # The test event reached the command's listener: verified, stored for the daemon.
    assert [e["eventType"] for e in await inbox(env.e2e)] == ["message.received"]

    async with env.daemon():
        pass
    assert [w["id"] for w in ours_v2(env)] == [webhook["id"]]
    assert env.quo.count("POST", "/webhooks") == 1
    assert env.quo.count("POST", "/webhooks/{id}/events/test") == 1


async def test_refused_beside_the_daemon(legacy_tenant: LiveEnv) -> None:
    env = legacy_tenant
    async with hold_state_lock(env.e2e.state_path, command=DAEMON_COMMAND):
        result = await env.e2e.cli("quo", "migrate-webhooks", "--tenant", TENANT)
    assert result.code == 2, result.describe()
    (line,) = result.err.splitlines()
    assert line.startswith("acme: the daemon `crmsync run` (pid ")
    assert "moves the Quo webhooks itself at start" in line
    assert "restart it" in line
    assert result.out == ""
    assert len(ours_legacy(env)) == 4


async def test_refused_with_a_legacy_config_or_without_public_url(
    legacy_tenant: LiveEnv,
) -> None:
    env = legacy_tenant
    path = env.e2e.config_path
    text = path.read_text()
    path.write_text(text.replace('webhooks = "2026-03-30"', 'webhooks = "legacy"'))
    result = await env.e2e.cli("quo", "migrate-webhooks", "--tenant", TENANT)
    assert result.code == 2, result.describe()
    assert result.err.splitlines() == [
        'acme: quo.webhooks is "legacy" in the config: set it to "2026-03-30" first (with'
        ' "legacy" the daemon would re-create the legacy webhooks)']
    path.write_text(re.sub(r'public_url = "[^"]*"\n', "", text))
    result = await env.e2e.cli("quo", "migrate-webhooks", "--tenant", TENANT)
    assert result.code == 2, result.describe()
    assert "http.public_url is not set" in result.err
    unknown = await env.e2e.cli("quo", "migrate-webhooks", "--tenant", "nope")
    assert unknown.code == 2 and "unknown tenant 'nope'" in unknown.err
    assert len(ours_legacy(env)) == 4 and ours_v2(env) == []


async def test_an_unverified_test_event_leaves_legacy_in_place(legacy_tenant: LiveEnv) -> None:
    """The command listens on another port than `public_url` names: Quo's test event
    reaches nobody, so nothing proves the new webhook works."""
    env = legacy_tenant
    path = env.e2e.config_path
    path.write_text(path.read_text().replace(f"port = {env.port}\n",
                                             f"port = {free_port()}\n"))
    legacy = ours_legacy(env)
    result = await env.e2e.cli("quo", "migrate-webhooks", "--tenant", TENANT)
    assert result.code == 1, result.describe()
    (line,) = result.err.splitlines()
    assert line.startswith("crmsync: acme: migration failed at step 'verified': ")
    assert "no answer" in line
    assert line.endswith("; the legacy webhooks are untouched")
    assert ours_legacy(env) == legacy
    (webhook,) = ours_v2(env)
    assert webhook["status"] == "disabled"
