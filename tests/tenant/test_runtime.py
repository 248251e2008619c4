"""The tenant runtime: the one writer of a tenant's state, and the budgets it keeps.

The daemon runs in-process against both simulators, so the test can watch the runtime,
the state database, the HTTP routes and the systemd notifications side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from crmsync.adapters.attio import AttioAdapter
from crmsync.adapters.base import CrmPage
from crmsync.cli.demo import free_loopback_port
from crmsync.config import parse_config
from crmsync.daemon.app import Daemon
from crmsync.daemon.systemd import Notifier
from crmsync.sim.attio import AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.testing import wait_until
from crmsync.store import TenantPhase, TenantState, open_store
from crmsync.tenant.resources import open_resources
from crmsync.tenant.runtime import TenantRuntime
from crmsync.tenant.supervisor import MAX_RESTARTS, RestartBudget, RestartBudgetSpentError
from crmsync.web.health import Health

TENANT = "acme"
QUO_KEY = "quo-runtime-key"
ATTIO_KEY = "attio-runtime-key"


class RecordingNotifier(Notifier):
    """A notifier without a socket that keeps what it would have sent."""

    def __init__(self) -> None:
        super().__init__(None)
        self.sent: list[str] = []

    def send(self, *fields: str) -> bool:
        self.sent.extend(fields)
        return True

    def statuses(self) -> list[str]:
        return [f.removeprefix("STATUS=") for f in self.sent if f.startswith("STATUS=")]


@dataclass
class Step:
    """One state the runtime wrote, and what every observer said right after."""

    state: TenantState
    phase: TenantPhase
    stored: tuple[str, str]
    status: tuple[str, str]
    ready: int
    reasons: list[str]
    summary: str


@dataclass
class Env:
    daemon: Daemon
    notifier: RecordingNotifier
    base_url: str
    state_path: Path
    steps: list[Step] = field(default_factory=list)


@contextlib.asynccontextmanager
async def daemon_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    """The daemon with one Attio tenant; every state the runtime writes is observed."""
    async with (
        run_quo_simulator(config=QuoSimConfig(api_keys=[QUO_KEY])) as (_, quo_url),
        run_attio_simulator(config=AttioSimConfig(api_keys=[ATTIO_KEY], people=5)) as (
            _, attio_url,
        ),
        aiohttp.ClientSession() as http,
    ):
        port = free_loopback_port()
        state_path = tmp_path / "state.db"
        config = parse_config(f"""
[daemon]
state_path = "{state_path}"
log_level = "warning"
[http]
host = "127.0.0.1"
port = {port}
[quo]
base_url = "{quo_url}"
[[tenants]]
id = "{TENANT}"
crm = "attio"
quo_api_key = "env:QUO"
crm_api_key = "env:ATTIO"
crm_base_url = "{attio_url}"
""", "<test>", {"QUO": QUO_KEY, "ATTIO": ATTIO_KEY})
        notifier = RecordingNotifier()
        daemon = Daemon(config, config_path=None, notifier=notifier, watchdog=None)
        env = Env(daemon, notifier, f"http://127.0.0.1:{port}", state_path)
        write_state = TenantRuntime._set_state

        async def observed(self: TenantRuntime, state: TenantState, **kw: Any) -> None:
            await write_state(self, state, **kw)
            env.steps.append(await observe(env, http, self))

        monkeypatch.setattr(TenantRuntime, "_set_state", observed)
        task = asyncio.create_task(daemon.run())
        try:
            yield env
        finally:
            daemon.stop()
            async with asyncio.timeout(20):
                await task


async def observe(env: Env, http: aiohttp.ClientSession, runtime: TenantRuntime) -> Step:
    async with open_store(env.state_path, readonly=True) as reader:
        row = await reader.tenants.get(TENANT)
    assert row is not None
    async with http.get(f"{env.base_url}/status") as response:
        (status,) = (await response.json())["tenants"]
    async with http.get(f"{env.base_url}/readyz") as response:
        ready, body = response.status, await response.json()
    return Step(
        state=runtime.state, phase=runtime.phase, stored=(row.state, row.phase),
        status=(status["state"], status["phase"]), ready=ready,
        reasons=body.get("reasons", []), summary=env.daemon._summary(),
    )


def restarts(actor: str) -> float:
    value = REGISTRY.get_sample_value(
        "crmsync_actor_restarts_total", {"tenant": TENANT, "actor": actor}
    )
    return value or 0.0


async def test_a_pass_that_keeps_crashing_fails_the_tenant_after_one_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. the daemon starts one tenant; every CRM page fetch raises (a CRM quirk the
       adapter does not survive)
    2. the initial sync pass is restarted by its supervisor within its budget
    3. the budget is spent
    Result: the tenant is `failed` after exactly one budget: MAX_RESTARTS + 1 pass
    attempts and MAX_RESTARTS counted restarts (not budget x budget), with the reason
    naming the crash. At every state the runtime wrote, the state database, `/status`,
    `/readyz` and the STATUS= summary agree with it; STATUS= ends on `1 failed`."""
    attempts = 0

    async def broken_fetch(
        self: AttioAdapter, crm_object: str, cursor: str | None, page_size: int
    ) -> CrmPage:
        nonlocal attempts
        attempts += 1
        raise RuntimeError("CRM is broken")

    monkeypatch.setattr(AttioAdapter, "fetch_page", broken_fetch)
    before = restarts("sync_pipeline")
    async with daemon_env(tmp_path, monkeypatch) as env:
        await wait_until(lambda: any(s.state == "failed" for s in env.steps),
                         within=20, message="the tenant failed")
        await wait_until(lambda: "1 tenant: 1 failed" in env.notifier.statuses(),
                         within=5, message="STATUS= says failed")
        runtime = env.daemon.runtime(TENANT)
        assert runtime is not None
        assert runtime.state == "failed"

    assert attempts == MAX_RESTARTS + 1
    assert restarts("sync_pipeline") - before == MAX_RESTARTS
    assert [(s.state, s.phase) for s in env.steps] == [
        ("starting", "setup"), ("running", "initial_sync"), ("failed", "initial_sync"),
    ]
    for step in env.steps:
        assert step.stored == step.status == (step.state, step.phase), step
        live = step.state == "running" and step.phase == "live"
        assert step.ready == (200 if live else 503), step
    starting, initial, failed = env.steps
    assert starting.reasons == [f"{TENANT}: starting"]
    assert "1 starting" in starting.summary
    assert initial.reasons == [f"{TENANT}: initial sync running"]
    assert "1 initial sync" in initial.summary
    (reason,) = failed.reasons
    assert reason.startswith(f"{TENANT}: failed (sync_pipeline: more than {MAX_RESTARTS}")
    assert "RuntimeError: CRM is broken" in reason
    assert "1 failed" in failed.summary


class FakeClock:
    """Monotonic time that only moves when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_foreground_sync_gives_up_after_its_budget_however_slow_each_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1. `sync_once` (what `crmsync sync` runs) for a tenant whose CRM fails every page
       fetch, each attempt taking 31 s (every restart budget reads a fake clock that
       the failing fetch moves on), so no 5 restarts ever fall within 30 s
    2. the pass is restarted by its supervisor after each crash.
    Result: `sync_once` raises `RestartBudgetSpentError` after MAX_RESTARTS + 1
    attempts, saying "more than 5 restarts" (no time window: the foreground budget
    counts restarts in total), and the tenant is stored `failed` with that reason.
    Before: the sliding window never filled and the pass restarted forever."""
    clock = FakeClock()
    kwdefaults = RestartBudget.__init__.__kwdefaults__
    assert kwdefaults is not None
    monkeypatch.setitem(kwdefaults, "clock", clock)
    attempts = 0

    async def slow_broken_fetch(
        self: AttioAdapter, crm_object: str, cursor: str | None, page_size: int
    ) -> CrmPage:
        nonlocal attempts
        attempts += 1
        clock.now += 31.0
        raise RuntimeError("CRM unreachable")

    monkeypatch.setattr(AttioAdapter, "fetch_page", slow_broken_fetch)
    config = parse_config(f"""
[daemon]
state_path = "{tmp_path / 'state.db'}"
[[tenants]]
id = "{TENANT}"
crm = "attio"
quo_api_key = "env:QUO"
crm_api_key = "env:ATTIO"
crm_base_url = "http://127.0.0.1:9/v2"
""", "<test>", {"QUO": QUO_KEY, "ATTIO": ATTIO_KEY})
    async with open_resources(config) as resources, open_store(tmp_path / "state.db") as store:
        runtime = TenantRuntime(
            config.tenants[0], resources=resources, store=store, health=Health()
        )
        with pytest.raises(RestartBudgetSpentError) as spent:
            async with asyncio.timeout(5):
                await runtime.sync_once()
        tenant = await store.tenants.get(TENANT)
    assert attempts == MAX_RESTARTS + 1
    assert f"more than {MAX_RESTARTS} restarts" in str(spent.value)
    assert "RuntimeError: CRM unreachable" in str(spent.value)
    assert tenant is not None
    assert tenant.state == "failed"
    assert tenant.last_error == str(spent.value)
