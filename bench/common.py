"""Shared bench plumbing: simulators in this process, the real CLI in a child process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.crms import CrmSimEntry, CrmSimulator, SimOptions, crm_simulator
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator

QUO_KEY = "bench-quo-key"
CRM_KEY = "bench-attio-key"


@dataclass
class Sims:
    quo: QuoSim
    quo_url: str
    attio: AttioSim
    attio_url: str


@contextlib.asynccontextmanager
async def simulators(
    people: int, rps: int, *, bulk_delay: tuple[float, float] = (1.0, 3.0)
) -> AsyncIterator[Sims]:
    quo_config = QuoSimConfig(
        api_keys=[QUO_KEY], requests_per_second=rps, bulk_visibility_delay=bulk_delay
    )
    attio_config = AttioSimConfig(api_keys=[CRM_KEY], people=people, seed=42)
    async with (
        run_quo_simulator(config=quo_config) as (quo, quo_url),
        run_attio_simulator(config=attio_config) as (attio, attio_url),
    ):
        yield Sims(quo, quo_url, attio, attio_url)


@dataclass
class CrmSims:
    """The Quo simulator and any CRM's (`crmsync.sim.crms`)."""

    quo: QuoSim
    quo_url: str
    crm: CrmSimulator
    crm_url: str
    name: str
    entry: CrmSimEntry


@contextlib.asynccontextmanager
async def crm_simulators(crm: str, people: int, rps: int) -> AsyncIterator[CrmSims]:
    entry = crm_simulator(crm)
    quo_config = QuoSimConfig(api_keys=[QUO_KEY], requests_per_second=rps)
    async with (
        run_quo_simulator(config=quo_config) as (quo, quo_url),
        entry.run(SimOptions(api_keys=[CRM_KEY], people=people, seed=42)) as (sim, crm_url),
    ):
        yield CrmSims(quo, quo_url, sim, crm_url, crm, entry)


def write_crm_config(directory: Path, sims: CrmSims, rps: int, *, page_size: int) -> Path:
    """A one-tenant config for any CRM (`BENCH_CRM_SECRET`: a hand-set webhook secret)."""
    return _write_config(directory, quo_url=sims.quo_url, rps=rps, crm=sims.name,
                         crm_url=sims.crm_url, page_size=page_size,
                         webhook_secret=sims.entry.webhook_secret is not None)


def write_config(directory: Path, sims: Sims, rps: int, *, bulk: bool, page_size: int) -> Path:
    return _write_config(directory, quo_url=sims.quo_url, rps=rps, crm="attio",
                         crm_url=sims.attio_url, page_size=page_size, bulk=bulk)


def _write_config(directory: Path, *, quo_url: str, rps: int, crm: str, crm_url: str,
                  page_size: int, bulk: bool = False, webhook_secret: bool = False) -> Path:
    secret = 'crm_webhook_secret = "env:BENCH_CRM_SECRET"\n' if webhook_secret else ""
    path = directory / "crmsync.toml"
    path.write_text(f"""
[daemon]
state_path = "{directory / 'state.db'}"
log_level = "warning"
[quo]
base_url = "{quo_url}"
requests_per_second = {rps}
bulk_create = {'true' if bulk else 'false'}
[[tenants]]
id = "bench"
crm = "{crm}"
quo_api_key = "env:BENCH_QUO_KEY"
crm_api_key = "env:BENCH_ATTIO_KEY"
crm_base_url = "{crm_url}"
page_size = {page_size}
{secret}""")
    return path


@dataclass
class ChildRun:
    returncode: int
    elapsed: float
    peak_rss_mib: float
    stdout: str
    stderr: str


def _high_water_kib(pid: int) -> int:
    """The process's peak RSS so far (VmHWM), 0 once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


@contextlib.asynccontextmanager
async def daemon_process(
    config: Path, env: dict[str, str], log: Path, *, python: list[str] | None = None,
    stop_within: float = 30.0,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`crmsync run -c CONFIG` as a child (`python`: the interpreter's command line, e.g.
    under cProfile or taskset), its output in `log`, without the asyncio debug mode the
    test suite sets; on exit SIGTERM (the drain), then SIGKILL after `stop_within` s."""
    env = dict(env)
    env.pop("PYTHONASYNCIODEBUG", None)
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *(python or [sys.executable]), "-m", "crmsync", "run", "-c", str(config),
            env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(stop_within):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def run_cli(*args: str, env: dict[str, str] | None = None) -> ChildRun:
    """Run `crmsync ARGS` as a child, sampling its peak RSS (VmHWM never decreases)."""
    env = dict(os.environ, BENCH_QUO_KEY=QUO_KEY, BENCH_ATTIO_KEY=CRM_KEY, **(env or {}))
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crmsync", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    peak_kib = 0

    async def sample() -> None:
        nonlocal peak_kib
        while proc.returncode is None:
            peak_kib = max(peak_kib, _high_water_kib(proc.pid))
            await asyncio.sleep(0.1)

    sampler = asyncio.create_task(sample())
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:  # the caller's timeout: do not leave the child behind
        proc.kill()
        await proc.wait()
        raise
    sampler.cancel()
    elapsed = time.monotonic() - started
    return ChildRun(
        proc.returncode if proc.returncode is not None else -1,
        elapsed,
        peak_kib / 1024,
        out.decode(),
        err.decode(),
    )
