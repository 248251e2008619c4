"""`crmsync run` as a real subprocess: reload, drain, parking and systemd notify.

The daemon runs as `python -m crmsync run -c PATH` against simulators in the test's
own loop: one Quo simulator (one API key per tenant; the sims share a workspace, the
tenants' people differ) and one Attio simulator per tenant, each seeded differently.
Logs are JSON lines on stderr; every wait polls `/readyz`, `/status`, the simulators
or the log against a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import support.live
from support.cli import cli_env, run_cli, spawn_cli

from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.testing import wait_until

pytestmark = pytest.mark.slow

READY_WITHIN = 45.0
BAD_QUO_KEY = "quo-REVOKED-SECRET-key"


def env_name(tenant: str, what: str) -> str:
    return f"{tenant.upper().replace('-', '_')}_{what}_KEY"


@dataclass
class Site:
    """One tenant's CRM (its own Attio simulator) and its keys."""

    tenant: str
    attio: AttioSim
    attio_url: str
    quo_key: str
    attio_key: str

    def people(self) -> set[str]:
        return {record.record_id for record in self.attio.people}


@dataclass
class Env:
    """The simulators, the config file and the daemon's environment."""

    tmp_path: Path
    quo: QuoSim
    quo_url: str
    sites: dict[str, Site]
    port: int
    rps: int
    page_size: int
    shutdown_timeout: float
    env: dict[str, str]
    daemons: list[Daemon] = field(default_factory=list)

    @property
    def config_path(self) -> Path:
        return self.tmp_path / "crmsync.toml"

    def write_config(self, tenants: list[str], *, extra_tenant_lines: str = "") -> None:
        """A config with these tenants (written atomically, as an editor would save it)."""
        text = (
            f'[daemon]\nstate_path = "{self.tmp_path / "crmsync.db"}"\nlog_level = "info"\n'
            f'log_format = "json"\nshutdown_timeout = {self.shutdown_timeout}\n\n'
            f'[http]\nhost = "127.0.0.1"\nport = {self.port}\n'
            f'public_url = "http://127.0.0.1:{self.port}"\n\n'
            f'[quo]\nbase_url = "{self.quo_url}"\nrequests_per_second = {self.rps}\n'
            f'webhooks_base_url = "{self.quo_url.removesuffix("/v1")}"\n'
        )
        for tenant in tenants:
            site = self.sites[tenant]
            text += (
                f'\n[[tenants]]\nid = "{tenant}"\ncrm = "attio"\n'
                f'quo_api_key = "env:{env_name(tenant, "QUO")}"\n'
                f'crm_api_key = "env:{env_name(tenant, "ATTIO")}"\n'
                f'crm_base_url = "{site.attio_url}"\npage_size = {self.page_size}\n'
                f"{extra_tenant_lines}"
            )
        self.write_text(text)

    def write_text(self, text: str) -> None:
        scratch = self.config_path.with_suffix(".tmp")
        scratch.write_text(text)
        scratch.replace(self.config_path)

    async def start(self, extra_env: dict[str, str] | None = None) -> Daemon:
        process = await spawn_cli(
            "run", "-c", str(self.config_path),
            env={**self.env, **(extra_env or {})}, cwd=self.tmp_path,
        )
        daemon = Daemon(process, f"http://127.0.0.1:{self.port}", self.sites)
        self.daemons.append(daemon)
        return daemon

    def in_quo(self, tenant: str) -> set[str]:
        """The tenant's people that have a Quo contact."""
        external = {c["externalId"] for c in self.quo.contacts.contacts.values()}
        return self.sites[tenant].people() & external

    def duplicates(self) -> dict[str, int]:
        seen: dict[str, int] = {}
        for contact in self.quo.contacts.contacts.values():
            seen[contact["externalId"]] = seen.get(contact["externalId"], 0) + 1
        return {k: n for k, n in seen.items() if n > 1}


class Daemon(support.live.Daemon):
    """`support.live.Daemon` plus JSON logs, several tenants and a secret check."""

    def __init__(
        self, process: asyncio.subprocess.Process, base_url: str, sites: dict[str, Site]
    ) -> None:
        super().__init__(process, base_url)
        self._secrets = [s.quo_key for s in sites.values()] + \
            [s.attio_key for s in sites.values()] + [BAD_QUO_KEY]

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log events so far (one per line)."""
        events = []
        for line in self._stderr.decode(errors="replace").splitlines():
            if line.startswith("{"):
                events.append(json.loads(line))
        return events

    def logged(self, fragment: str) -> list[dict[str, Any]]:
        return [e for e in self.logs() if fragment in e["message"]]

    async def tenants(self) -> dict[str, dict[str, Any]]:
        status, body = await self.get("/status")
        assert status == 200, (status, body)
        return {t["id"]: t for t in body["tenants"]}

    async def wait_live(self, *tenants: str, within: float = READY_WITHIN) -> None:
        """`/readyz` 200 and each of `tenants` running in phase live."""

        async def live() -> bool:
            status, _ = await self.get("/readyz")
            if status != 200:
                return False
            states = await self.tenants()
            return all(
                states[t]["state"] == "running" and states[t]["phase"] == "live" for t in tenants
            )

        await self.wait_for(live, within=within, message=f"{', '.join(tenants)} live")

    async def stop(self) -> None:
        """SIGTERM: exit 0, no traceback, no secret in the output."""
        self.signal(signal.SIGTERM)
        assert await self.exit_code(30) == 0, self.output
        self.assert_clean()

    def assert_clean(self) -> None:
        output = self.output
        assert "Traceback" not in output, output
        for secret in self._secrets:
            assert secret not in output, "a secret appeared in the daemon's output"


@contextlib.asynccontextmanager
async def daemon_env(
    tmp_path: Path,
    people: dict[str, int],
    *,
    rps: int = 100,
    page_size: int = 25,
    shutdown_timeout: float = 10.0,
) -> AsyncIterator[Env]:
    """A Quo simulator, one Attio simulator per tenant of `people`; daemons reaped on exit."""
    quo_keys = {t: f"quo-{t}-SECRET-key" for t in people}
    attio_keys = {t: f"attio-{t}-SECRET-key" for t in people}
    async with contextlib.AsyncExitStack() as stack:
        quo, quo_url = await stack.enter_async_context(run_quo_simulator(
            config=QuoSimConfig(api_keys=list(quo_keys.values()), requests_per_second=rps)
        ))
        sites = {}
        for seed, (tenant, count) in enumerate(people.items(), start=1):
            attio, attio_url = await stack.enter_async_context(run_attio_simulator(
                config=AttioSimConfig(api_keys=[attio_keys[tenant]], people=count, seed=seed)
            ))
            sites[tenant] = Site(tenant, attio, attio_url, quo_keys[tenant], attio_keys[tenant])
        env = cli_env({
            **{env_name(t, "QUO"): k for t, k in quo_keys.items()},
            **{env_name(t, "ATTIO"): k for t, k in attio_keys.items()},
        })
        setup = Env(tmp_path, quo, quo_url, sites, support.live.free_port(), rps, page_size,
                    shutdown_timeout, env)
        try:
            yield setup
        finally:
            for daemon in setup.daemons:
                await daemon.close()


# -- SIGHUP ----------------------------------------------------------------------------


async def test_sighup_adds_a_tenant(tmp_path: Path) -> None:
    """1. config with tenant acme (20 people); the daemon runs it until live
    2. the file gains tenant globex (15 other people); SIGHUP
    3. poll Quo until globex's people are there, /status until globex is live
    Result: all 15 in Quo, globex live, /readyz 200; same process (pid, never exited);
    acme untouched (not stopped, its last run the same); the reload is logged.
    """
    async with daemon_env(tmp_path, {"acme": 20, "globex": 15}) as env:
        env.write_config(["acme"])
        daemon = await env.start()
        await daemon.wait_live("acme")
        pid = daemon.process.pid
        acme_before = (await daemon.tenants())["acme"]

        env.write_config(["acme", "globex"])
        daemon.signal(signal.SIGHUP)
        await daemon.wait_for(lambda: env.in_quo("globex") == env.sites["globex"].people(),
                              message="globex's people in Quo")
        await daemon.wait_live("acme", "globex")

        assert daemon.running and daemon.process.pid == pid
        acme_after = (await daemon.tenants())["acme"]
        assert acme_after["lastRun"] == acme_before["lastRun"]
        assert not [e for e in daemon.logged("stopping") if e.get("tenant") == "acme"]
        assert daemon.logged("1 added [globex], 0 removed, 0 restarted, 1 unchanged")
        assert env.in_quo("acme") == env.sites["acme"].people()
        assert not env.duplicates()
        await daemon.stop()


async def test_sighup_removes_a_tenant(tmp_path: Path) -> None:
    """1. config with acme and globex (10 people each); both live
    2. the file drops globex; SIGHUP
    3. poll /status until globex is stopped
    Result: globex `stopped` and no longer configured, its webhooks answered 404; acme
    still running and live; /readyz 200; same process.
    """
    async with daemon_env(tmp_path, {"acme": 10, "globex": 10}) as env:
        env.write_config(["acme", "globex"])
        daemon = await env.start()
        await daemon.wait_live("acme", "globex")
        pid = daemon.process.pid

        env.write_config(["acme"])
        daemon.signal(signal.SIGHUP)

        async def globex_stopped() -> bool:
            globex = (await daemon.tenants())["globex"]
            return globex["state"] == "stopped" and not globex["configured"]

        await daemon.wait_for(globex_stopped, message="globex stopped")
        await daemon.wait_live("acme")
        assert daemon.running and daemon.process.pid == pid
        assert [e for e in daemon.logged("stopping (removed") if e.get("tenant") == "globex"]
        async with daemon.session.post(f"{daemon.base_url}/webhooks/globex/crm",
                                       data=b"{}") as response:
            assert response.status == 404
        status, body = await daemon.get("/readyz")
        assert status == 200, body
        await daemon.stop()


async def test_sighup_with_an_invalid_file_keeps_the_running_config(tmp_path: Path) -> None:
    """1. config with acme (10 people); live
    2. the file gets two problems (an unknown CRM, an unknown key); SIGHUP
    3. poll the log until the reload is rejected
    Result: both problems logged, one line each; acme still running, /readyz 200;
    a later valid SIGHUP reloads fine (nothing changed: nothing restarted).
    """
    async with daemon_env(tmp_path, {"acme": 10}) as env:
        env.write_config(["acme"])
        daemon = await env.start()
        await daemon.wait_live("acme")
        valid = env.config_path.read_text()

        env.write_text(valid.replace('crm = "attio"', 'crm = "atio"\ncolour = "blue"'))
        daemon.signal(signal.SIGHUP)
        await daemon.wait_for(lambda: len(daemon.logged("reload rejected")) >= 2,
                              message="reload rejected")
        problems = [e["message"] for e in daemon.logged("reload rejected")]
        assert any("unknown CRM 'atio'" in p for p in problems), problems
        assert any("colour" in p for p in problems), problems
        assert all(e["level"] == "error" for e in daemon.logged("reload rejected"))
        status, body = await daemon.get("/readyz")
        assert status == 200, body
        assert (await daemon.tenants())["acme"]["state"] == "running"

        env.write_text(valid)
        daemon.signal(signal.SIGHUP)
        await daemon.wait_for(lambda: bool(daemon.logged("reloaded:")), message="reloaded")
        assert daemon.logged("0 added, 0 removed, 0 restarted, 1 unchanged")
        await daemon.stop()


# -- shutdown and parking ----------------------------------------------------------------

DRAIN_PEOPLE = 360
DRAIN_RPS = 30
DRAIN_TIMEOUT = 20.0


async def test_sigterm_mid_sync_drains_then_resumes(tmp_path: Path) -> None:
    """1. 360 people, Quo at 30 requests/s: the initial sync takes ~12 s
    2. once 30 contacts are in Quo, SIGTERM; meanwhile a webhook gets 503, /readyz 503
    3. the daemon drains the fetched pages to their checkpoints, exits
    4. start it again; wait until live
    Result: exit 0 within shutdown_timeout (+5 s); after the drain the committed counts
    match what Quo holds; the restart resumes from the checkpoint; every person in Quo
    exactly once, 360 creates (POSTs <= 360 x 1.01).
    """
    async with daemon_env(tmp_path, {"acme": DRAIN_PEOPLE}, rps=DRAIN_RPS,
                          shutdown_timeout=DRAIN_TIMEOUT) as env:
        env.write_config(["acme"])
        daemon = await env.start()
        await daemon.wait_for(lambda: len(env.in_quo("acme")) >= 30, message="30 in Quo")
        signalled = time.monotonic()
        daemon.signal(signal.SIGTERM)

        async def intake_closed() -> bool:
            async with daemon.session.post(f"{daemon.base_url}/webhooks/acme/crm",
                                           data=b"{}") as response:
                return response.status == 503

        await daemon.wait_for(intake_closed, within=5, message="webhooks answered 503")
        status, body = await daemon.get("/readyz")
        assert status == 503 and "daemon: shutting down" in body["reasons"], body
        assert await daemon.exit_code(DRAIN_TIMEOUT + 5) == 0, daemon.output
        elapsed = time.monotonic() - signalled
        assert elapsed < DRAIN_TIMEOUT + 5, elapsed
        daemon.assert_clean()
        assert daemon.logged("stopping (shutdown: drained)"), daemon.output
        stopped_at = len(env.in_quo("acme"))
        assert 30 <= stopped_at < DRAIN_PEOPLE, "the sync was not mid-way"

        # Drained: every acknowledged create is mapped and its page committed.
        (tenant,) = [t for t in await _status_json(env) if t["id"] == "acme"]
        assert tenant["state"] == "stopped"
        assert tenant["counts"]["created"] == stopped_at, tenant
        assert tenant["watermark"]["people"]["cursor"] == str(stopped_at), tenant

        daemon = await env.start()
        await daemon.wait_live("acme", within=60)
        assert env.in_quo("acme") == env.sites["acme"].people()
        assert not env.duplicates()
        assert env.quo.count("POST", "/v1/contacts", 201) == DRAIN_PEOPLE
        assert env.quo.count("POST", "/v1/contacts") <= DRAIN_PEOPLE * 1.01
        assert daemon.logged(f"resuming people from cursor {stopped_at}")
        await daemon.stop()


async def test_a_second_sigint_forces_the_exit(tmp_path: Path) -> None:
    """1. 360 people, Quo at 30 requests/s; once 30 contacts are in Quo, SIGINT
    2. the drain starts (it would take seconds: hundreds of records in flight)
    3. SIGINT again
    Result: exit 130 within a few seconds of the second SIGINT, the tenant cancelled
    with the reason `forced`, no traceback.
    """
    async with daemon_env(tmp_path, {"acme": DRAIN_PEOPLE}, rps=DRAIN_RPS,
                          shutdown_timeout=DRAIN_TIMEOUT) as env:
        env.write_config(["acme"])
        daemon = await env.start()
        await daemon.wait_for(lambda: len(env.in_quo("acme")) >= 30, message="30 in Quo")
        daemon.signal(signal.SIGINT)
        await daemon.wait_for(lambda: bool(daemon.logged("SIGINT: stopping")),
                              message="drain started")
        forced_at = time.monotonic()
        daemon.signal(signal.SIGINT)
        assert await daemon.exit_code(10) == 130, daemon.output
        assert time.monotonic() - forced_at < 10
        assert daemon.logged("stopping (shutdown: forced")
        assert len(env.in_quo("acme")) < DRAIN_PEOPLE
        daemon.assert_clean()


async def _status_json(env: Env) -> list[dict[str, Any]]:
    result = await run_cli("status", "--json", "-c", str(env.config_path),
                           env=env.env, cwd=env.tmp_path)
    assert result.code == 0, result.err
    return list(json.loads(result.out)["tenants"])


async def test_a_rejected_quo_key_parks_one_tenant_only(tmp_path: Path) -> None:
    """1. tenants acme (15 people) and globex, whose Quo key the simulator rejects (401)
    2. start the daemon; poll /status
    Result: globex parked with the credential error, acme live with all 15 in Quo;
    /readyz 503 naming globex only; the rejected key never appears in the output.
    """
    async with daemon_env(tmp_path, {"acme": 15, "globex": 5}) as env:
        env.write_config(["acme", "globex"])
        daemon = await env.start({env_name("globex", "QUO"): BAD_QUO_KEY})

        async def settled() -> bool:
            states = await daemon.tenants()
            return states["globex"]["state"] == "parked" and \
                states["acme"]["state"] == "running" and states["acme"]["phase"] == "live"

        await daemon.wait_for(settled, within=READY_WITHIN, message="acme live, globex parked")
        assert env.in_quo("acme") == env.sites["acme"].people()
        assert not env.in_quo("globex")
        globex = (await daemon.tenants())["globex"]
        assert "credentials rejected" in globex["lastError"], globex
        status, body = await daemon.get("/readyz")
        assert status == 503, body
        assert len(body["reasons"]) == 1 and body["reasons"][0].startswith("globex: parked")
        await daemon.stop()


# -- systemd notify ------------------------------------------------------------------------


async def test_systemd_notify_sequence(tmp_path: Path) -> None:
    """1. bind a Unix datagram socket in tmp_path; NOTIFY_SOCKET points at it,
       WATCHDOG_USEC=1000000
    2. start the daemon (acme, 5 people); read datagrams until READY=1
    3. SIGUSR1: every task's stack is logged
    4. SIGHUP; read until RELOADING=1 (with MONOTONIC_USEC) and READY=1 again
    5. wait for two more WATCHDOG=1; SIGTERM
    Result: exit 0; READY=1 → RELOADING=1 → READY=1 → STOPPING=1 in that order, the
    reload datagram carries a plausible MONOTONIC_USEC, WATCHDOG=1 keeps coming while
    it runs, STATUS= lines summarise the tenants.
    """
    notify_path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(notify_path))
    receiver.setblocking(False)
    datagrams: list[list[str]] = []

    async def receive() -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(receiver, 4096)
            datagrams.append(data.decode().split("\n"))

    def seen(field: str) -> int:
        return sum(field in d for d in datagrams)

    reader = asyncio.create_task(receive())
    try:
        async with daemon_env(tmp_path, {"acme": 5}) as env:
            env.write_config(["acme"])
            daemon = await env.start({"NOTIFY_SOCKET": str(notify_path),
                                      "WATCHDOG_USEC": "1000000"})
            await daemon.wait_for(lambda: seen("READY=1") == 1, within=READY_WITHIN,
                                  message="READY=1")
            ready = next(d for d in datagrams if "READY=1" in d)
            assert "STATUS=1 tenant: 1 initial sync" in ready or \
                "STATUS=1 tenant: 1 running" in ready, ready

            daemon.signal(signal.SIGUSR1)
            await daemon.wait_for(lambda: bool(daemon.logged("SIGUSR1")), message="stacks")
            (dump,) = daemon.logged("SIGUSR1")
            assert "--- tenant:acme ---" in dump["message"]
            assert "--- daemon:monitor ---" in dump["message"]

            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            daemon.signal(signal.SIGHUP)
            await daemon.wait_for(lambda: seen("READY=1") == 2, message="READY=1 after reload")
            (reloading,) = [d for d in datagrams if "RELOADING=1" in d]
            (monotonic,) = [f for f in reloading if f.startswith("MONOTONIC_USEC=")]
            usec = int(monotonic.removeprefix("MONOTONIC_USEC="))
            after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            assert before <= usec <= after

            watchdogs = seen("WATCHDOG=1")
            await daemon.wait_for(lambda: seen("WATCHDOG=1") >= watchdogs + 2,
                                  message="WATCHDOG=1 keeps coming")
            await daemon.stop()
            await wait_until(lambda: seen("STOPPING=1") == 1, within=5, message="STOPPING=1")
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        receiver.close()

    lifecycle = [f for d in datagrams for f in d
                 if f in ("READY=1", "RELOADING=1", "STOPPING=1")]
    assert lifecycle == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], datagrams
    first_ready = next(i for i, d in enumerate(datagrams) if "READY=1" in d)
    stopping = next(i for i, d in enumerate(datagrams) if "STOPPING=1" in d)
    assert any("WATCHDOG=1" in d for d in datagrams[first_ready:stopping])
    assert all(f.startswith(("READY=", "RELOADING=", "MONOTONIC_USEC=", "STOPPING=",
                             "STATUS=", "WATCHDOG=")) for d in datagrams for f in d)
