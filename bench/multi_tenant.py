"""Multi-tenant benchmark: N tenants' initial syncs at once in one `crmsync run`.

    python bench/multi_tenant.py [--tenants 200] [--people 300] [--limit 10]
                                 [--page-size 100] [--idle 15] [--no-calibrate]
                                 [--basis adaptive|response|send]
                                 [--daemon-cpus LIST] [--py-spy FILE] [--cprofile FILE]
                                 [--keep-log FILE]

Each tenant has its own Quo API key (limited to `--limit` requests per second) and its
own Attio workspace of `--people` seeded people; every tenant starts its initial sync
the moment the daemon starts. The daemon is the real CLI (`python -m crmsync run`) in a
child process; the Quo simulator runs in a second child, the Attio simulators in this
process (`bench/fleet.py`). No `http.public_url` is set, so no tenant registers
webhooks (a shared Quo workspace holds at most 50): setup costs no Quo request, and
every request measured is the initial sync's (webhook load: `bench/webhooks.py`,
`bench/soak.py`).

Prints one line of figures (and, with `--py-spy`, the daemon's hottest functions):

    util_min util_median   per key: requests ÷ limit ÷ active seconds (from its first
                           request at the simulator to one second after its last, the
                           window that request occupied: a key held at its limit scores
                           at most one second's worth short of 1.0 over its whole span)
    quo_rps                every key's requests ÷ (last arrival - first arrival)
    first_req_s last_req_s when the keys' first and last requests came, seconds after
                           the daemon was started (min/median/max)
    lag_p99_ms lag_max_ms  the daemon's `crmsync_event_loop_lag_seconds` until the syncs
                           were done (interpolated within a bucket; max: a bucket bound)
    cpu                    the daemon's user+sys CPU seconds ÷ wall seconds while the
                           keys were in use (1.0 = one core); loop_cpu: its main thread's
                           (the event loop), the rest is SQLite's thread; quo_cpu,
                           attio_cpu: the simulators'; machine_cpu: every process's,
                           other work on the machine included (of os.cpu_count() cores)
    cpu_ms_per_contact     the daemon's CPU from its start until every tenant was live ÷
                           mapped contacts (less sensitive to other load than rates)
    peak_rss_mib           the daemon's VmHWM
    idle_rss_mib idle_cpu  its RSS `--idle` seconds after the syncs, and its CPU share
                           meanwhile (every tenant live, nothing to do: its timers)
    rss_per_tenant_kib     (idle RSS of N tenants with no people - idle RSS of none) ÷ N
    rss_per_10k_mib        (idle RSS - idle RSS of N tenants with no people) per 10,000
                           mapped contacts (two extra short runs; `--no-calibrate`: skip)
    store_write_*_ms       `crmsync_store_write_seconds{write="mapping"}`: a record's
                           mapping transaction as the pipeline waited for it (the
                           store's lock included); checkpoint: a page's commit
    quo_429 max_window     429s answered; most requests of one key in any sliding
                           second ÷ limit (1.0 = at the limit, never over)
    sim_lag_p99_ms         the simulators' loops (Quo's / Attio's), while keys were used
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))

from common import daemon_process
from fleet import AttioFleet, QuoProcess, QuoReport, attio_fleet, attio_key, quo_key, quo_process

from crmsync.daemon.loop import loop_factory

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.5
PROGRESS_SECONDS = 10.0
Figures = dict[str, float | int | str]


def tenant_id(i: int) -> str:
    return f"t{i:04d}"


# -- the daemon -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, quo_url: str, attio_urls: list[str],
                 args: argparse.Namespace, port: int) -> Path:
    lines = [
        "[daemon]", f'state_path = "{directory / "state.db"}"', 'log_level = "warning"',
        "[http]", 'host = "127.0.0.1"', f"port = {port}",
        "[quo]", f'base_url = "{quo_url}"', f"requests_per_second = {args.limit}",
        f'rate_limit_basis = "{args.basis}"',
    ]
    for i, url in enumerate(attio_urls):
        lines += [
            "[[tenants]]", f'id = "{tenant_id(i)}"', 'crm = "attio"',
            f'quo_api_key = "env:BENCH_QUO_{i:04d}"',
            f'crm_api_key = "env:BENCH_ATTIO_{i:04d}"',
            f'crm_base_url = "{url}"', f"page_size = {args.page_size}",
        ]
    path = directory / "crmsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def key_env(tenants: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    for i in range(tenants):
        env[f"BENCH_QUO_{i:04d}"] = quo_key(i)
        env[f"BENCH_ATTIO_{i:04d}"] = attio_key(i)
    return env


def daemon(config: Path, env: dict[str, str], log: Path, profile: Path | None,
           cpus: str | None) -> contextlib.AbstractAsyncContextManager[asyncio.subprocess.Process]:
    python = [sys.executable] if profile is None else [
        sys.executable, "-m", "cProfile", "-o", str(profile)]
    if cpus is not None:
        python = ["taskset", "--cpu-list", cpus, *python]
    return daemon_process(config, env, log, python=python, stop_within=60)


# -- sampling -------------------------------------------------------------------------


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of every thread of `pid`, or of its thread `tid` only."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    stat = Path(path).read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idle and iowait since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in KiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values["VmRSS"], values["VmHWM"]


@dataclass
class Sample:
    at: float  # time.monotonic()
    cpu: float  # the daemon's, every thread
    loop_cpu: float  # the daemon's main thread: the event loop
    quo_cpu: float  # the Quo simulator's process
    attio_cpu: float  # this process: the Attio simulators (and this sampler)
    machine_cpu: float
    rss_kib: int
    hwm_kib: int


async def sampler(pid: int, quo_pid: int, samples: list[Sample]) -> None:
    while True:
        with contextlib.suppress(OSError, ValueError, KeyError):
            rss, hwm = memory_kib(pid)
            samples.append(Sample(
                time.monotonic(), cpu_seconds(pid), cpu_seconds(pid, pid),
                cpu_seconds(quo_pid), time.process_time(), machine_busy_seconds(), rss, hwm,
            ))
        await asyncio.sleep(SAMPLE_SECONDS)


def cpu_until(samples: list[Sample], end: float) -> float:
    """The daemon's CPU seconds from its start to `end` (the last sample before it)."""
    return max((s.cpu for s in samples if s.at <= end), default=math.nan)


def cpu_share(samples: list[Sample], start: float, end: float, what: str) -> float:
    """CPU seconds per wall second of `what` (a Sample field) between start and end."""
    inside = [s for s in samples if start <= s.at <= end]
    if len(inside) < 2:
        return math.nan
    first, last = inside[0], inside[-1]
    used: float = getattr(last, what) - getattr(first, what)
    return used / (last.at - first.at)


# -- one run --------------------------------------------------------------------------


@dataclass
class DaemonRun:
    started: float
    ready: float = 0.0
    samples: list[Sample] = field(default_factory=list)
    metrics_ready: str = ""
    idle_end: float = 0.0
    idle_rss_kib: int = 0
    mapped: int = 0


async def wait_ready(session: aiohttp.ClientSession, base: str,
                     proc: asyncio.subprocess.Process, log: Path, tenants: int) -> None:
    """Until /readyz says every tenant is live; a progress line every 10 s."""
    last_report = time.monotonic()
    while True:
        if proc.returncode is not None:
            output = await asyncio.to_thread(log.read_text)
            raise SystemExit(f"daemon exited {proc.returncode}:\n{output[-4000:]}")
        reasons: list[str] = []
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(base + "/readyz") as ready:
                if ready.status == 200:
                    return
                reasons = (await ready.json()).get("reasons", [])
        broken = [r for r in reasons if "failed" in r or "parked" in r]
        if broken:
            raise SystemExit("tenants failed: " + "; ".join(broken[:5]))
        if time.monotonic() - last_report >= PROGRESS_SECONDS:
            last_report = time.monotonic()
            kinds = Counter(r.split(": ", 1)[-1] for r in reasons)
            print(f"  … {len(reasons)} of {tenants} not ready: {dict(kinds)}",
                  file=sys.stderr, flush=True)
        await asyncio.sleep(1.0)


def mapped_contacts(state: Path) -> int:
    with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as db:
        (count,) = db.execute("SELECT count(*) FROM mappings").fetchone()
    return int(count)


async def run_daemon(quo: QuoProcess, attio: AttioFleet, args: argparse.Namespace,
                     directory: Path, *, idle: float, profile: bool) -> DaemonRun:
    """Start the daemon, wait until every tenant is live, then `idle` seconds."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(directory, quo.url, attio.urls, args, port)
    log = directory / "daemon.log"
    cprofile = args.cprofile if profile else None
    timeout = aiohttp.ClientTimeout(total=60)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        daemon(config, key_env(len(attio.urls)), log, cprofile, args.daemon_cpus) as proc,
    ):
        run = DaemonRun(time.monotonic())
        sampling = asyncio.create_task(sampler(proc.pid, quo.pid, run.samples))
        spy = None if not profile or args.py_spy is None else await asyncio.create_subprocess_exec(
            "py-spy", "record", "--pid", str(proc.pid), "--rate", "100", "--gil",
            "--nonblocking", "--format", "raw", "--output", str(args.py_spy),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(args.timeout):
                await wait_ready(session, base, proc, log, len(attio.urls))
            run.ready = time.monotonic()
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                await spy.wait()
            async with session.get(base + "/metrics") as response:
                run.metrics_ready = await response.text()
            await asyncio.sleep(idle)
            run.idle_end = time.monotonic()
            run.idle_rss_kib, _ = memory_kib(proc.pid)
        finally:
            sampling.cancel()
            if spy is not None and spy.returncode is None:
                spy.kill()
                await spy.wait()
    run.mapped = mapped_contacts(directory / "state.db")
    return run


async def one_run(args: argparse.Namespace, *, tenants: int, people: int, idle: float,
                  profile: bool = False) -> tuple[DaemonRun, QuoReport, AttioFleet]:
    async with (
        quo_process(tenants, args.limit) as quo,
        attio_fleet(tenants, people) as attio,
    ):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                run = await run_daemon(quo, attio, args, Path(tmp), idle=idle, profile=profile)
            finally:
                if args.keep_log is not None:  # the daemon's log outlives its state
                    with contextlib.suppress(OSError):
                        args.keep_log.write_bytes((Path(tmp) / "daemon.log").read_bytes())
    assert quo.report is not None
    return run, quo.report, attio


# -- figures --------------------------------------------------------------------------


def histogram(text: str, name: str, **labels: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) of a Prometheus histogram, summed over every
    series carrying `labels` (e.g. all tenants')."""
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    counts: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{") and all(w in line for w in wanted):
            series, value = line.rsplit(" ", 1)
            bound = series.split('le="', 1)[1].split('"', 1)[0]
            upper = math.inf if bound == "+Inf" else float(bound)
            counts[upper] = counts.get(upper, 0.0) + float(value)
    return sorted(counts.items())


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """The q-quantile, linearly interpolated within its bucket (Prometheus' way)."""
    if not buckets or buckets[-1][1] == 0:
        return math.nan
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


def highest_bucket(buckets: list[tuple[float, float]]) -> float:
    """The upper bound of the highest non-empty bucket (a bound on the maximum)."""
    total = buckets[-1][1] if buckets else 0.0
    return next((bound for bound, count in buckets if count == total), math.nan)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def spread(values: list[float]) -> str:
    """min/median/max, one decimal."""
    return f"{values[0]:.1f}/{statistics.median(values):.1f}/{values[-1]:.1f}"


def figures(run: DaemonRun, quo: QuoReport, attio: AttioFleet, args: argparse.Namespace,
            ) -> Figures:
    limit = args.limit
    keys = [quo.keys.get(quo_key(i)) for i in range(args.tenants)]
    used = [k for k in keys if k is not None and k.arrivals and k.first and k.last]
    if len(used) < args.tenants:
        raise SystemExit(f"only {len(used)} of {args.tenants} keys reached the simulator")
    utils = sorted(k.arrivals / limit / k.active_seconds() for k in used)
    first = min(k.first for k in used if k.first is not None)
    last = max(k.last for k in used if k.last is not None)
    requests = sum(k.arrivals for k in used)
    lag = histogram(run.metrics_ready, "crmsync_event_loop_lag_seconds", tenant="_daemon")
    store = histogram(run.metrics_ready, "crmsync_store_write_seconds", write="mapping")
    pages = histogram(run.metrics_ready, "crmsync_store_write_seconds", write="checkpoint")

    def busy(samples: list[tuple[float, float]]) -> list[float]:
        return [late for at, late in samples if first <= at <= last]

    return {
        "tenants": args.tenants,
        "people": args.people,
        "mapped": run.mapped,
        "sync_s": run.ready - run.started,
        "quo_active_s": last - first,
        "first_req_s": spread(sorted(k.first - run.started for k in used if k.first)),
        "last_req_s": spread(sorted(k.last - run.started for k in used if k.last)),
        "util_min": utils[0],
        "util_p10": percentile(utils, 0.10),
        "util_median": statistics.median(utils),
        "quo_requests": requests,
        "quo_rps": requests / (last - first),
        "quo_429": quo.rate_limited,
        "max_window": max(k.max_in_any_window for k in used) / limit,
        "lag_p50_ms": quantile(lag, 0.50) * 1000,
        "lag_p99_ms": quantile(lag, 0.99) * 1000,
        "lag_max_ms": highest_bucket(lag) * 1000,
        "cpu": cpu_share(run.samples, first, last, "cpu"),
        # the daemon's CPU from its start until every tenant was live, per contact
        "cpu_ms_per_contact": 1000 * cpu_until(run.samples, run.ready) / max(1, run.mapped),
        "loop_cpu": cpu_share(run.samples, first, last, "loop_cpu"),
        "quo_cpu": cpu_share(run.samples, first, last, "quo_cpu"),
        "attio_cpu": cpu_share(run.samples, first, last, "attio_cpu"),
        "machine_cpu": cpu_share(run.samples, first, last, "machine_cpu"),
        "peak_rss_mib": max((s.hwm_kib for s in run.samples), default=0) / 1024,
        "idle_rss_mib": run.idle_rss_kib / 1024,
        # the daemon's CPU once every tenant is live and nothing changes (its timers)
        "idle_cpu": cpu_share(run.samples, run.ready + 1.0, run.idle_end, "cpu"),
        "store_write_p50_ms": quantile(store, 0.50) * 1000,
        "store_write_p99_ms": quantile(store, 0.99) * 1000,
        "checkpoint_p99_ms": quantile(pages, 0.99) * 1000,
        "sim_lag_p99_ms": f"{percentile(busy(quo.lag), 0.99) * 1000:.1f}/"
                          f"{percentile(busy(attio.lag), 0.99) * 1000:.1f}",
    }


def hottest(raw: Path, top: int = 25) -> list[str]:
    """py-spy's raw (collapsed) stacks → the functions with the most own samples, and
    the most samples anywhere on the stack."""
    own: Counter[str] = Counter()
    anywhere: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            anywhere[frame] += n
    lines = [f"py-spy: {total} samples; own time:"]
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in own.most_common(top)]
    lines.append("on the stack:")
    lines += [f"  {n / total:6.1%}  {frame}" for frame, n in anywhere.most_common(top)]
    return lines


# -- main -----------------------------------------------------------------------------


async def bench(args: argparse.Namespace) -> None:
    run, quo, attio = await one_run(args, tenants=args.tenants, people=args.people,
                                    idle=args.idle, profile=True)
    result = figures(run, quo, attio, args)
    if args.calibrate:
        empty, _, _ = await one_run(args, tenants=0, people=0, idle=args.idle)
        bare, _, _ = await one_run(args, tenants=args.tenants, people=0, idle=args.idle)
        result["rss_per_tenant_kib"] = (bare.idle_rss_kib - empty.idle_rss_kib) / args.tenants
        result["rss_per_10k_mib"] = (
            (run.idle_rss_kib - bare.idle_rss_kib) / 1024 / run.mapped * 10_000
            if run.mapped else math.nan
        )
    print("  ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
    ), flush=True)
    if args.py_spy is not None and args.py_spy.exists():
        print("\n".join(hottest(args.py_spy)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tenants", type=int, default=200)
    parser.add_argument("--people", type=int, default=300,
                        help="Attio people per tenant (one Quo request each)")
    parser.add_argument("--limit", type=int, default=10, help="Quo requests/s per key")
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--basis", choices=["adaptive", "response", "send"],
                        default="adaptive", help="quo.rate_limit_basis of the daemon")
    parser.add_argument("--idle", type=float, default=15.0,
                        help="seconds after the syncs before the idle RSS is read")
    parser.add_argument("--timeout", type=float, default=1800.0,
                        help="seconds the initial syncs may take")
    parser.add_argument("--no-calibrate", dest="calibrate", action="store_false",
                        help="skip the two short runs behind the RSS-per-tenant figures")
    parser.add_argument("--daemon-cpus", default=None, metavar="LIST",
                        help="pin the daemon to these CPUs (taskset --cpu-list), e.g. 1")
    parser.add_argument("--keep-log", type=Path, default=None,
                        help="copy the daemon's log here (of the last daemon run)")
    parser.add_argument("--cprofile", type=Path, default=None,
                        help="run the daemon under cProfile, its stats written here")
    parser.add_argument("--py-spy", type=Path, default=None,
                        help="record the daemon with py-spy during the syncs (raw stacks)")
    args = parser.parse_args()
    if args.tenants < 1:
        parser.error("--tenants must be at least 1")
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(bench(args))


if __name__ == "__main__":
    main()
