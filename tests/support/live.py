"""Live-daemon harness: `crmsync run` as a real subprocess against in-process simulators.

    async with live_env(tmp_path, people=20) as env:      # sims + config (support.e2e)
        async with env.daemon() as daemon:                 # started, waited until live
            ...                                            # SIGTERM'd, exit 0 asserted

`live_env` builds on `support.e2e.e2e_env` (both simulators on free loopback ports, a
`crmsync.toml`, the child's environment) and adds the daemon's `[http]` listener on a
free port with `public_url` pointing at it, plus the tenant's `poll_interval`. The
daemon's output is drained continuously (a full pipe would stall it) and shown when
something fails. Readiness is `/readyz` 200 *and* the tenant in phase `live` in
`/status`; every wait polls with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgspec

from crmsync.sim.attio import AttioSim
from crmsync.sim.quo import QuoSim
from crmsync.sim.quo.testing import wait_until
from support.cli import spawn_cli
from support.e2e import E2E, TENANT, e2e_env

__all__ = [
    "TENANT", "Daemon", "LiveEnv", "contact_of", "free_port", "inbox", "live_env", "notes_of",
    "unique_phones", "wait_until",
]

READY_WITHIN = 45.0
STOP_WITHIN = 20.0


def free_port() -> int:
    """A loopback port nobody listens on right now (the daemon binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Daemon:
    """One `crmsync run` child: its output, its HTTP endpoints, and how it ends."""

    def __init__(self, process: asyncio.subprocess.Process, base_url: str) -> None:
        self.process = process
        self.base_url = base_url
        self._stdout = bytearray()
        self._stderr = bytearray()
        assert process.stdout is not None and process.stderr is not None
        self._drains = [
            asyncio.create_task(self._drain(process.stdout, self._stdout)),
            asyncio.create_task(self._drain(process.stderr, self._stderr)),
        ]
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into += chunk

    @property
    def output(self) -> str:
        return (
            f"--- daemon stdout ---\n{self._stdout.decode(errors='replace')}"
            f"\n--- daemon stderr ---\n{self._stderr.decode(errors='replace')[-30000:]}"
        )

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.base_url + path) as response:
            body = await response.read()
            try:
                decoded = msgspec.json.decode(body) if body else None
            except msgspec.DecodeError:
                decoded = body.decode(errors="replace")
            return response.status, decoded

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> int:
        async with self.session.post(self.base_url + path, data=body, headers=headers) as r:
            await r.read()
            return r.status

    async def tenant_status(self) -> dict[str, Any]:
        status, body = await self.get("/status")
        assert status == 200, (status, body)
        (tenant,) = [t for t in body["tenants"] if t["id"] == TENANT]
        return dict(tenant)

    async def wait_ready(self, within: float = READY_WITHIN) -> None:
        """`/readyz` 200 and the tenant live; fails at once if the child exits or the
        tenant is reported failed."""

        async def ready() -> bool:
            assert self.running, f"daemon exited with {self.process.returncode}\n{self.output}"
            try:
                status, body = await self.get("/readyz")
                if status != 200:
                    reasons = body.get("reasons", []) if isinstance(body, dict) else []
                    failed = [r for r in reasons if "failed" in r]
                    assert not failed, f"tenant failed: {failed}\n{self.output}"
                    return False
                tenant = await self.tenant_status()
            except (aiohttp.ClientError, TimeoutError):
                return False  # not listening yet
            return tenant["state"] == "running" and tenant["phase"] == "live"

        try:
            await wait_until(ready, within=within, interval=0.1, message="daemon ready")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.output}") from None

    async def wait_for(
        self,
        condition: Callable[[], bool | Awaitable[bool]],
        *,
        within: float = 30.0,
        message: str = "condition",
    ) -> None:
        """`wait_until`, failing early (with the daemon's output) if the daemon dies."""

        async def check() -> bool:
            assert self.running, f"daemon exited with {self.process.returncode}\n{self.output}"
            try:
                result = condition()
                return result if isinstance(result, bool) else await result
            except (aiohttp.ClientError, TimeoutError):
                return False  # not listening yet

        try:
            await wait_until(check, within=within, interval=0.05, message=message)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.output}") from None

    def signal(self, sig: signal.Signals) -> None:
        assert self.running, self.output
        self.process.send_signal(sig)

    async def exit_code(self, within: float) -> int:
        try:
            async with asyncio.timeout(within):
                return await self.process.wait()
        except TimeoutError:
            raise AssertionError(f"daemon still running after {within} s\n{self.output}") \
                from None

    async def terminate(self, within: float = STOP_WITHIN) -> int:
        """SIGTERM and wait for the exit code (SIGKILL after `within` s: a failure)."""
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(within):
                return await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            raise AssertionError(f"daemon ignored SIGTERM for {within} s\n{self.output}") \
                from None

    async def kill(self) -> None:
        """SIGKILL: no cleanup, no final commit."""
        self.process.kill()
        assert await self.process.wait() == -signal.SIGKILL

    async def close(self) -> None:
        """Reap the child whatever happened (a test failure must not leak it)."""
        if self.running:
            self.process.kill()
        await self.process.wait()
        async with asyncio.timeout(5):
            await asyncio.gather(*self._drains, return_exceptions=True)
        await self.session.close()


@dataclass
class DaemonHost:
    """`crmsync run -c config_path` with `env`, listening on `port`, as often as a test
    starts it; every child is kept in `daemons` for `reaping` to reap."""

    config_path: Path
    env: dict[str, str]
    port: int
    daemons: list[Daemon] = field(default_factory=list, kw_only=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, *, wait: bool = True) -> Daemon:
        process = await spawn_cli("run", "-c", str(self.config_path), env=self.env,
                                  cwd=self.config_path.parent)
        daemon = Daemon(process, self.base_url)
        self.daemons.append(daemon)
        if wait:
            await daemon.wait_ready()
        return daemon

    @contextlib.asynccontextmanager
    async def daemon(self) -> AsyncIterator[Daemon]:
        """A live daemon; on a clean exit of the block, SIGTERM must end it with 0."""
        daemon = await self.start()
        yield daemon
        rc = await daemon.terminate()
        assert rc == 0, f"daemon exited with {rc} after SIGTERM\n{daemon.output}"
        assert "Traceback" not in daemon.output, daemon.output


Host = TypeVar("Host", bound=DaemonHost)


@contextlib.asynccontextmanager
async def reaping(host: Host) -> AsyncIterator[Host]:
    """`host`; on exit, whatever happened, its daemons are reaped (none leaks)."""
    try:
        yield host
    finally:
        for daemon in host.daemons:
            await daemon.close()


def add_listener(config_path: Path, port: int, *, poll_interval: float,
                 public_url: bool = True) -> None:
    """Append the tenant's `poll_interval` and an `[http]` listener on `port` (with
    `public_url` pointing at it) to a config from `support.e2e.write_config`."""
    # The file ends inside [[tenants]]: the tenant key goes first, then a new table
    # (TOML allows tables in any order).
    url = f"public_url = \"http://127.0.0.1:{port}\"\n" if public_url else ""
    with config_path.open("a") as config:
        config.write(f"poll_interval = {poll_interval}\n\n"
                     f"[http]\nhost = \"127.0.0.1\"\nport = {port}\n{url}")


@dataclass
class LiveEnv(DaemonHost):
    """`E2E` (sims, config, CLI helpers) plus the daemon's listener address."""

    e2e: E2E

    @property
    def quo(self) -> QuoSim:
        return self.e2e.quo

    @property
    def attio(self) -> AttioSim:
        return self.e2e.attio


@contextlib.asynccontextmanager
async def live_env(
    tmp_path: Path,
    *,
    people: int = 20,
    rps: int = 100,
    poll_interval: float = 300.0,
    seed: int = 20261123,
    daemon_options: Mapping[str, str] | None = None,
    quo_options: Mapping[str, str] | None = None,
    **e2e_options: Any,
) -> AsyncIterator[LiveEnv]:
    """Simulators and a daemon config with `[http]` on a free port; daemons reaped on exit.

    `daemon_options` and `quo_options` add `[daemon]` and `[quo]` keys (TOML literals);
    `e2e_options` go to `e2e_env` as they are (`bulk_create=True`, `page_size=20`, ...).
    """
    async with e2e_env(tmp_path, people=people, rps=rps, seed=seed,
                       daemon_options=daemon_options, quo_options=quo_options,
                       **e2e_options) as e2e:
        port = free_port()
        add_listener(e2e.config_path, port, poll_interval=poll_interval)
        async with reaping(LiveEnv(e2e.config_path, e2e.env, port, e2e=e2e)) as env:
            yield env


# -- what the simulators hold -------------------------------------------------------------


def unique_phones(attio: AttioSim) -> dict[str, str]:
    """Record id -> an E.164 phone that no other person has (people with one only)."""
    owners: dict[str, set[str]] = {}
    for record in attio.people:
        for phone in attio.person_phones(record.record_id):
            owners.setdefault(phone, set()).add(record.record_id)
    result: dict[str, str] = {}
    for phone, ids in sorted(owners.items()):
        if len(ids) == 1:
            result.setdefault(next(iter(ids)), phone)
    return result


def notes_of(attio: AttioSim, record_id: str) -> list[dict[str, Any]]:
    return [n for n in attio.notes.values() if n["parent_record_id"] == record_id]


def contact_of(e2e: E2E, record_id: str) -> dict[str, Any] | None:
    """The one Quo contact with this externalId (None if there is none)."""
    found = e2e.contacts_by_external_id().get(record_id, [])
    assert len(found) <= 1, f"{len(found)} Quo contacts for {record_id}"
    return found[0] if found else None


async def inbox(e2e: E2E) -> list[dict[str, Any]]:
    """`crmsync inbox --tenant acme --json`: the stored events, newest first."""
    result = await e2e.cli("inbox", "--tenant", TENANT, "--json", "--limit", "1000")
    assert result.code == 0, result.describe()
    return list(msgspec.json.decode(result.out)["events"])
