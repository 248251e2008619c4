"""The simulators behind `bench/multi_tenant.py`: one Quo for every key, one Attio each.

* The Quo simulator runs in a process of its own (`python bench/fleet.py quo ...`),
  so its gate stamps arrivals with a loop that does nothing else: a simulator that lags
  bunches arrivals together and answers 429s that crmsync did not earn. It accepts
  every tenant's key and keeps an exact sliding window per key, with each key's first
  and last arrival (`time.monotonic()`, the same clock in every process). The tenants
  share its one workspace: each CRM's people have their own record ids, so no two
  tenants write the same `externalId`, and contact writes fire no webhooks back. On
  SIGTERM it writes what it saw as JSON (`QuoReport`).
* The Attio simulators (one per tenant, each on its own port with its own seed) run in
  the benchmark's process: an initial sync asks each for a page per 100 people.

Both loops are probed the same way as the daemon's (`lag`: how late a 50 ms sleep
woke), so a report can say whether the simulators kept up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSimConfig, run_quo_simulator

LAG_PROBE_SECONDS = 0.05


def quo_key(i: int) -> str:
    return f"bench-quo-key-{i:04d}"


def attio_key(i: int) -> str:
    return f"bench-attio-key-{i:04d}"


async def probe_lag(samples: list[tuple[float, float]]) -> None:
    """Append (when, seconds late) every `LAG_PROBE_SECONDS` until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + LAG_PROBE_SECONDS
        await asyncio.sleep(LAG_PROBE_SECONDS)
        samples.append((time.monotonic(), max(0.0, loop.time() - due)))


# -- Quo, in its own process ----------------------------------------------------------


@dataclass
class KeyReport:
    arrivals: int
    rejected: int
    first: float | None
    last: float | None
    max_in_any_window: int

    def active_seconds(self, window: float = 1.0) -> float:
        """First arrival to one window after the last (`SlidingWindowGate.active_seconds`)."""
        if self.first is None or self.last is None:
            return 0.0
        return self.last - self.first + window


@dataclass
class QuoReport:
    keys: dict[str, KeyReport]
    rate_limited: int
    contacts: int
    lag: list[tuple[float, float]] = field(default_factory=list)

    @classmethod
    def read(cls, path: Path) -> QuoReport:
        raw = json.loads(path.read_text())
        return cls({k: KeyReport(**v) for k, v in raw["keys"].items()}, raw["rate_limited"],
                   raw["contacts"], [(at, late) for at, late in raw["lag"]])


async def serve_quo(keys: int, limit: int, report: Path) -> None:
    """The child's main: serve until SIGTERM, then write the `QuoReport`."""
    config = QuoSimConfig(api_keys=[quo_key(i) for i in range(keys)] or ["unused"],
                          requests_per_second=limit, api_writes_fire_contact_events=False)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    lag: list[tuple[float, float]] = []
    async with run_quo_simulator(config=config) as (sim, url):
        probe = asyncio.create_task(probe_lag(lag))
        print(url, flush=True)
        await stop.wait()
        probe.cancel()
        keys_seen = {
            key: KeyReport(state.arrivals, state.rejected, state.first_arrival,
                           state.last_arrival, state.max_in_any_window)
            for key, state in sim.gate.keys.items()
        }
        result = QuoReport(keys_seen, sim.stats.rate_limited, len(sim.contacts.contacts), lag)
        await asyncio.to_thread(report.write_text, json.dumps(asdict(result)))


@dataclass
class QuoProcess:
    url: str
    pid: int
    report: QuoReport | None = None


@contextlib.asynccontextmanager
async def quo_process(keys: int, limit: int) -> AsyncIterator[QuoProcess]:
    """Start the Quo simulator's process; on exit stop it and read its report."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "quo.json"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "quo", str(keys), str(limit), str(report),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            async with asyncio.timeout(60):
                url = (await proc.stdout.readline()).decode().strip()
            if not url.startswith("http"):
                raise SystemExit(f"the Quo simulator did not start (exit {await proc.wait()})")
            running = QuoProcess(url, proc.pid)
            yield running
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
            running.report = QuoReport.read(report)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


# -- Attio, in this process -----------------------------------------------------------


@dataclass
class AttioFleet:
    sims: list[AttioSim]
    urls: list[str]
    lag: list[tuple[float, float]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def attio_fleet(tenants: int, people: int) -> AsyncIterator[AttioFleet]:
    async with contextlib.AsyncExitStack() as stack:
        fleet = AttioFleet([], [])
        for i in range(tenants):
            config = AttioSimConfig(api_keys=[attio_key(i)], people=people, seed=1000 + i)
            sim, url = await stack.enter_async_context(run_attio_simulator(config=config))
            fleet.sims.append(sim)
            fleet.urls.append(url)
        probe = asyncio.create_task(probe_lag(fleet.lag))
        try:
            yield fleet
        finally:
            probe.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description="the Quo simulator of bench/multi_tenant.py")
    parser.add_argument("role", choices=["quo"])
    parser.add_argument("keys", type=int)
    parser.add_argument("limit", type=int)
    parser.add_argument("report", type=Path)
    args = parser.parse_args()
    from crmsync.daemon.loop import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(serve_quo(args.keys, args.limit, args.report))


if __name__ == "__main__":
    main()
