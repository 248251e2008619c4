"""Soak: `crmsync run` with 20 tenants under steady webhooks and polling; fails on growth.

    python bench/soak.py [--minutes 30] [--sample-seconds 60] [--warmup-minutes 5]
                         [--tenants 20] [--people 40] [--rate 5] [--poll-interval 10]
                         [--idle-seconds 45] [--state-dir DIR] [--tracemalloc FRAMES]

The simulators run in this process: per tenant one Quo simulator (its own key and
workspace) and one Attio simulator (its own key and workspace). `[quo] base_url` is
one URL for every tenant, so a small router in this process sends each request to the
Quo simulator of its `Authorization` key. The daemon (`crmsync run`) is a child process
with a short `poll_interval` and `inbox_retention_days = 1` (the shortest allowed).

Once every tenant is live, events are sent open-loop at `--rate` per second in all,
round-robin over the tenants: SMS (`message.received`), calls (`call.completed`) and
their summaries (`call.summary.completed`), all published by the Quo simulators through
the 2026-03-30 webhook the daemon registered (signed, logged, retried like Quo's), and
CRM person changes (a job title edit: Attio's signed `record.updated`), which the daemon
writes to Quo, whose `contact.updated` echo comes back as a webhook too.

Every `--sample-seconds` it samples the child: RSS (VmRSS), open file descriptors
(`/proc/PID/fd`), asyncio tasks (SIGUSR1 makes the daemon log every task with its
stack; the count is read from that log line; the daemon has no task-count metric), the
SQLite file and its WAL, and per table its rows and bytes (`dbstat`, read-only, between
the daemon's writes). Fds and tasks are the fewest of three readings 1.5 s apart (a
request in flight holds one of each for a moment; a leak holds them for good).

Open TCP connections are counted apart from the other fds: a keep-alive pool (the
daemon's, and the simulators' whose deliveries the daemon's listener holds open, one
task each) keeps a connection as long as it is reused within its keep-alive time, and
aiohttp reuses the oldest first, so under steady traffic a pool stays at the most
connections it ever needed at once: it steps up with a burst (a loaded machine) and
not back while the traffic lasts, which is no leak but looks like one in a slope.
Connections are therefore judged idle: `--idle-seconds` after the daemon is live and
before the load, and again that long after the load stopped (the pools close what
they no longer use), the daemon must hold no more connections, fds or tasks than
before the load (`IDLE_TOLERANCE` per minute of load). The slope check applies to the
fds other than connections, and to the tasks other than the listener's one per
connection (aiohttp's `RequestHandler.start()`).
Meanwhile `/metrics`, `/status` and `/readyz` are read every `--scrape-seconds`, as a
monitoring system would. `--tracemalloc FRAMES` (diagnostics) also prints where the
child's Python allocations grew after the warm-up.

At the end it prints per series the least-squares slope per minute over the samples
after the warm-up and fails (exit 1) if one is above its tolerance (`TOLERANCES`):

    rss_mib       0.5 MiB/min      fds_other, tasks_other   0.1 per minute (none leaks
                                   per event)
    wal_mib       0.1 MiB/min      (checkpoints keep the WAL bounded)
    db_other_kib  16 KiB/min       the database's pages minus the tables that grow with
                                   the traffic (`GROWS_WITH`)
    rows          0.5 per minute   of each other table
    bytes/event   4 KiB            what the tables that grow with events add per event
    idle          0.1 per minute   connections, fds and tasks after the load, idle, less
                                   before it (what the pools do not explain)

A soak is shorter than any retention (`inbox_retention_days` is at least one day), so
the tables that keep rows per event or per poll pass grow during it, whether or not
something deletes them later: the check is that they grow by a bounded amount per event,
that nothing else grows, and that each growing table has a rule that deletes its rows
again (`Growth.pruned`, read off crmsync/store; a table that grows with none fails).
The daemon must then stop on SIGTERM with exit 0 and no traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from crmsync.sim.attio import AttioSim, AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.publish import Publication
from crmsync.store.runs import RUNS_KEPT

MIB = 1024 * 1024
#: series -> the largest slope per minute that is not growth
TOLERANCES: dict[str, float] = {
    "rss_mib": 0.5,
    "fds_other": 0.1,  # the fds other than TCP connections (judged idle, below)
    "tasks_other": 0.1,  # the tasks other than the listener's per connection (idle, too)
    "wal_mib": 0.1,
    "db_other_kib": 16.0,
}
BYTES_PER_EVENT_LIMIT = 4096.0
#: connections, fds and tasks per minute of load that the daemon, idle after the load,
#: may hold more than idle before it
IDLE_TOLERANCE = 0.1
#: rows per minute a table outside `GROWS_WITH` may gain (none should, after the warm-up)
ROWS_TOLERANCE = 0.5


@dataclass(frozen=True)
class Growth:
    """Why a table grows (`driver`: "event" or "poll pass") and what deletes its rows
    again (None: nothing does, so it grows for the daemon's whole life)."""

    driver: str
    pruned: str | None


#: tables whose rows come with the traffic; keep `pruned` in step with crmsync/store
GROWS_WITH = {
    "webhook_inbox": Growth("event", "after inbox_retention_days (>= 1 day)"),
    "webhook_deliveries": Growth("event", "delivery ids after 28 h"),
    "quo_calls": Growth("event", "30 days after the call's last event"),
    "activities": Growth("event", "after the longer of the call retention (30 days) and"
                         " inbox_retention_days"),  # one row per logged message or call
    "sync_runs": Growth("poll pass", f"beyond the newest {RUNS_KEPT} runs of the tenant"),
}
KINDS = ("sms", "call", "summary", "crm")
TASK_LINE = re.compile(r"^(\d+) tasks$", re.MULTILINE)
#: the listener's task of one open connection (aiohttp's server: one per keep-alive)
CONNECTION_TASK = re.compile(r"^Stack for <Task \w+ name='[^']*' coro=<RequestHandler\.start\(\)",
                             re.MULTILINE)
TASK_NAME = re.compile(r"^--- (.*) ---$", re.MULTILINE)
ID_LIKE = re.compile(r"[0-9a-f]{8,}|\d+")


# -- the simulators -----------------------------------------------------------------------


@dataclass
class Tenant:
    id: str
    quo_key: str
    attio_key: str
    quo: QuoSim
    quo_root: str
    attio: AttioSim
    attio_url: str
    phones: list[str] = field(default_factory=list)  # one person each
    people: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def tenants(args: argparse.Namespace) -> AsyncIterator[list[Tenant]]:
    async with contextlib.AsyncExitStack() as stack:
        result = []
        for n in range(args.tenants):
            quo_key, attio_key = f"soak-quo-{n:03d}", f"soak-attio-{n:03d}"
            quo, quo_url = await stack.enter_async_context(run_quo_simulator(config=QuoSimConfig(
                api_keys=[quo_key], requests_per_second=args.quo_rps, seed=1000 + n,
                bulk_visibility_delay=(0.5, 1.0),
            )))
            attio, attio_url = await stack.enter_async_context(run_attio_simulator(
                config=AttioSimConfig(api_keys=[attio_key], people=args.people, seed=2000 + n)
            ))
            result.append(Tenant(f"t{n:03d}", quo_key, attio_key, quo,
                                 quo_url.removesuffix("/v1"), attio, attio_url))
        yield result


HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection",
                         "keep-alive", "content-encoding", "date", "server"})


@contextlib.asynccontextmanager
async def quo_router(roots: dict[str, str]) -> AsyncIterator[str]:
    """One Quo URL for the config; each request goes to the simulator of its key."""
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.StreamResponse:
        root = roots.get(request.headers.get("Authorization", ""))
        if root is None:
            return web.json_response({"message": "Unauthorized"}, status=401)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        async with session.request(request.method, root + request.rel_url.raw_path_qs,
                                   data=await request.read(), headers=headers,
                                   allow_redirects=False) as answer:
            body = await answer.read()
            back = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
            if "Content-Encoding" in answer.headers:
                back["Content-Encoding"] = answer.headers["Content-Encoding"]
            return web.Response(status=answer.status, body=body, headers=back)

    app = web.Application(client_max_size=64 * MIB)
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
        await session.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, all_tenants: list[Tenant], router: str, port: int,
                 args: argparse.Namespace) -> Path:
    lines = [
        "[daemon]",
        f'state_path = "{directory / "state.db"}"',
        'log_level = "warning"',
        'log_format = "json"',
        "inbox_retention_days = 1",
        "[http]",
        'host = "127.0.0.1"',
        f"port = {port}",
        f'public_url = "http://127.0.0.1:{port}"',
        "[quo]",
        f'base_url = "{router}/v1"',
        f'webhooks_base_url = "{router}"',
        'webhooks = "2026-03-30"',
        f"requests_per_second = {args.quo_rps}",
    ]
    for tenant in all_tenants:
        lines += [
            "[[tenants]]",
            f'id = "{tenant.id}"',
            'crm = "attio"',
            f'quo_api_key = "env:SOAK_QUO_{tenant.id.upper()}"',
            f'crm_api_key = "env:SOAK_ATTIO_{tenant.id.upper()}"',
            f'crm_base_url = "{tenant.attio_url}"',
            f"poll_interval = {args.poll_interval}",
        ]
    path = directory / "crmsync.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def unique_phones(attio: AttioSim) -> list[str]:
    """Phones that exactly one person has (so each event notes one person)."""
    owners: Counter[str] = Counter()
    for record in attio.people:
        for phone in set(attio.person_phones(record.record_id)):
            owners[phone] += 1
    return sorted(phone for phone, n in owners.items() if n == 1)


# -- the daemon ---------------------------------------------------------------------------


class Daemon:
    """`crmsync run` as a child; its JSON log lines go to a file and are read for
    task dumps, warnings and errors."""

    def __init__(self, process: asyncio.subprocess.Process, base: str, log: Path) -> None:
        self.process = process
        self.base = base
        self.log_path = log
        self.dumps: asyncio.Queue[str] = asyncio.Queue()
        self.levels: Counter[tuple[str, str]] = Counter()  # (level, logger) -> lines
        self.samples: list[str] = []  # the first lines of each kind, for the report
        self.tracebacks = 0
        self.snapshots: asyncio.Queue[Path] = asyncio.Queue()  # `--tracemalloc`
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        with self.log_path.open("ab") as out:
            while line := await self.process.stderr.readline():
                out.write(line)
                if line.startswith(b"TRACEMALLOC "):
                    self.snapshots.put_nowait(Path(line.decode().split(" ", 1)[1].strip()))
                    continue
                try:
                    event = json.loads(line)
                    message = str(event.get("message", ""))
                except ValueError:
                    event, message = {"level": "raw", "logger": "-"}, line.decode(errors="replace")
                if message.startswith("SIGUSR1: "):
                    self.dumps.put_nowait(message.removeprefix("SIGUSR1: "))
                    continue
                key = (str(event.get("level")), str(event.get("logger")))
                if key not in self.levels and len(self.samples) < 20:
                    self.samples.append(line.decode(errors="replace").strip()[:400])
                self.levels[key] += 1
                if "Traceback" in message or "exception" in event:
                    self.tracebacks += 1

    async def task_dump(self, within: float = 30.0) -> str:
        while not self.dumps.empty():
            self.dumps.get_nowait()
        self.process.send_signal(signal.SIGUSR1)
        async with asyncio.timeout(within):
            return await self.dumps.get()

    async def trace_snapshot(self, within: float = 120.0) -> Path:
        """`--tracemalloc` only: make the child dump a snapshot; its path."""
        self.process.send_signal(signal.SIGUSR2)
        async with asyncio.timeout(within):
            return await self.snapshots.get()

    async def stop(self, within: float = 60.0) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(within):
                code = await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
            code = -9
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await self._reader
        return code


#: `--tracemalloc`: the child runs `crmsync` under this, and SIGUSR2 makes it dump a
#: snapshot to DIRECTORY/trace-K.snap (K = 0, 1, ...); diagnostics only, it is slow
TRACE_WRAPPER = """
import os, runpy, signal, sys, tracemalloc
directory = sys.argv.pop(1)
taken = []
def dump(signum, frame):
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__),))
    path = os.path.join(directory, f"trace-{len(taken)}.snap")
    snapshot.dump(path + ".tmp")
    os.replace(path + ".tmp", path)
    taken.append(path)
    os.write(2, f"TRACEMALLOC {path}\\n".encode())
signal.signal(signal.SIGUSR2, dump)
sys.argv[0] = "crmsync"
runpy.run_module("crmsync", run_name="__main__", alter_sys=True)
"""


@contextlib.asynccontextmanager
async def daemon(config: Path, env: dict[str, str], base: str, log: Path, *,
                 trace_frames: int = 0) -> AsyncIterator[Daemon]:
    child_env = {**os.environ, **env}
    child_env.pop("PYTHONASYNCIODEBUG", None)  # production speed
    command = ["-m", "crmsync"]
    if trace_frames:
        command = ["-X", f"tracemalloc={trace_frames}", "-c", TRACE_WRAPPER, str(log.parent)]
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command, "run", "-c", str(config), env=child_env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, limit=16 * MIB,
    )
    running = Daemon(process, base, log)
    try:
        yield running
    finally:
        if process.returncode is None:
            await running.stop()


async def wait_live(session: aiohttp.ClientSession, child: Daemon, within: float) -> float:
    started = time.monotonic()
    async with asyncio.timeout(within):
        while True:
            if child.process.returncode is not None:
                raise SystemExit(f"daemon exited {child.process.returncode}; log:"
                                 f" {child.log_path}\n" + "\n".join(child.samples))
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(child.base + "/status") as answer:
                    tenants_now = (await answer.json())["tenants"]
                if all(t["state"] == "running" and t["phase"] == "live" for t in tenants_now):
                    return time.monotonic() - started
            await asyncio.sleep(0.5)


# -- the load -----------------------------------------------------------------------------


@dataclass
class Load:
    sent: Counter[str] = field(default_factory=Counter)
    acked: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    scrapes: int = 0  # monitoring reads answered 200
    in_flight: set[asyncio.Task[None]] = field(default_factory=set)

    def error(self, kind: str, text: str) -> None:
        self.failed[kind] += 1
        if len(self.errors) < 10:
            self.errors.append(f"{kind}: {text}")


async def publish(kind: str, tenant: Tenant, n: int, rng: random.Random, load: Load) -> None:
    quo = tenant.quo
    publication: Publication
    try:
        if kind == "sms":
            publication = await quo.sms(rng.choice(tenant.phones), f"soak message {n}")
        elif kind == "call":
            publication = await quo.call_completed(rng.choice(tenant.phones))
            tenant.calls.append(publication.resource)
            del tenant.calls[:-50]
        else:
            call = tenant.calls.pop(0) if tenant.calls else rng.choice(tenant.phones)
            publication = await quo.summary(call, [f"soak summary {n}"], ["call back"])
    except Exception as exc:  # the bench counts it, whatever it was
        load.error(kind, f"{type(exc).__name__}: {exc}")
        return
    statuses = [d.attempts[0].response_status_code for d in publication.deliveries
                if d.attempts]
    if statuses and all(s is not None and 200 <= s < 300 for s in statuses):
        load.acked[kind] += 1
    else:
        load.error(kind, f"first attempts answered {statuses or 'nothing'}")


def crm_change(tenant: Tenant, n: int, rng: random.Random, load: Load) -> None:
    """A person's job title edited in Attio: its `record.updated` goes out at once."""
    try:
        tenant.attio.update_person(rng.choice(tenant.people), job_title=f"Role {n}")
    except Exception as exc:  # the bench counts it, whatever it was
        load.error("crm", f"{type(exc).__name__}: {exc}")


def crm_delivery_counts(all_tenants: list[Tenant]) -> tuple[int, int]:
    """Attio deliveries acknowledged and not (every attempt failed)."""
    acked = failed = 0
    for tenant in all_tenants:
        deliverer = tenant.attio.deliverer
        ok_keys = {a.idempotency_key for a in deliverer.attempts if a.ok}
        acked += len(ok_keys)
        failed += sum(1 for d in deliverer.sent if d.idempotency_key not in ok_keys)
    return acked, failed


async def drive(all_tenants: list[Tenant], args: argparse.Namespace, load: Load,
                stop: asyncio.Event) -> None:
    """Open loop at `--rate`: event n goes to tenant n mod N, its kind drawn by share."""
    rng = random.Random(14)
    weights = [args.sms_share, args.call_share, args.summary_share, args.crm_share]
    start = time.monotonic()
    n = 0
    while not stop.is_set():
        delay = start + n / args.rate - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            continue
        tenant = all_tenants[n % len(all_tenants)]
        (kind,) = rng.choices(KINDS, weights)
        load.sent[kind] += 1
        if kind == "crm":
            crm_change(tenant, n, rng, load)
        else:
            task = asyncio.create_task(publish(kind, tenant, n, rng, load))
            load.in_flight.add(task)
            task.add_done_callback(load.in_flight.discard)
        n += 1
    if load.in_flight:
        await asyncio.wait(load.in_flight, timeout=60)


# -- sampling -----------------------------------------------------------------------------


@dataclass
class Sample:
    minute: float
    rss_mib: float
    fds: int
    conns: int  # established TCP connections (keep-alive pools included)
    fds_other: int  # fds other than those connections
    tasks: int
    tasks_other: int  # tasks other than the listener's one per open connection
    db_mib: float
    wal_mib: float
    events: int  # accepted so far (Quo first attempts 2xx + Attio changes sent)
    table_rows: dict[str, int]
    table_kib: dict[str, float]
    logical_mib: float  # pages in use, the WAL's newest included
    task_names: Counter[str]
    load: float = 0.0  # the machine's 1-minute load average (2 cores: 2 is full)
    trace: Path | None = None  # `--tracemalloc`: the child's snapshot

    def kib_of(self, driver: str | None = None) -> float:
        """KiB of the tables that grow with `driver` (None: with anything)."""
        return sum(v for k, v in self.table_kib.items()
                   if k in GROWS_WITH and driver in (None, GROWS_WITH[k].driver))

    @property
    def db_other_kib(self) -> float:
        """The database minus the tables that grow with the traffic: the other tables,
        the free pages and the schema (what must stay flat)."""
        return self.logical_mib * 1024 - self.kib_of()


@dataclass
class ProcessFiles:
    """What /proc and the file system say of the child and its database, at one time."""

    rss_mib: float
    fds: int
    conns: int
    db_mib: float
    wal_mib: float

    @classmethod
    def read(cls, pid: int, state: Path) -> ProcessFiles:
        rss = float("nan")
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
        wal = Path(f"{state}-wal")
        sockets, fds = set(), 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed meanwhile
                target = str(fd.readlink())
                fds += 1
                if target.startswith("socket:["):
                    sockets.add(target[8:-1])
        conns = 0
        for table in ("tcp", "tcp6"):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                conns += fields[3] != TCP_LISTEN and fields[9] in sockets
        return cls(
            rss_mib=rss,
            fds=fds,
            conns=conns,
            db_mib=state.stat().st_size / MIB,
            wal_mib=wal.stat().st_size / MIB if wal.exists() else 0.0,
        )


TCP_LISTEN = "0A"  # /proc/net/tcp's state of a listening socket


def table_stats(path: Path) -> tuple[dict[str, int], dict[str, float], float]:
    """Rows and KiB per table (its indexes included) and the database's size in MiB as
    its pages (the WAL's newest versions included), read-only."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        owner = dict(conn.execute(
            "SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table', 'index')"))
        kib: Counter[str] = Counter()
        for name, size in conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name"):
            kib[owner.get(name, name)] += size / 1024
        rows = {
            table: int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
            for table in sorted(set(owner.values())) if not table.startswith("sqlite_")
        }
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        size = conn.execute("PRAGMA page_count").fetchone()[0] * page / MIB
    finally:
        conn.close()
    return rows, dict(kib), size


def tasks_other(dump: str) -> int:
    """The dump's tasks less the listener's per-connection tasks (-1: no count)."""
    m = TASK_LINE.search(dump)
    return int(m.group(1)) - len(CONNECTION_TASK.findall(dump)) if m else -1


def task_groups(dump: str) -> Counter[str]:
    """Task names with ids and numbers folded (`quo-sim-publish-#`), counted."""
    return Counter(ID_LIKE.sub("#", name) for name in TASK_NAME.findall(dump))


#: fds and tasks are each the least of this many readings a second or two apart: a
#: request in flight adds one of each for a moment, a leak for good
READINGS = 3


async def fewest_of(child: Daemon, state: Path,
                    ) -> tuple[list[str], list[int], list[ProcessFiles]]:
    """`READINGS` task dumps, their task counts and fd readings, 1.5 s apart."""
    dumps, readings = [], []
    for reading in range(READINGS):
        if reading:
            await asyncio.sleep(1.5)
        dumps.append(await child.task_dump())
        readings.append(await asyncio.to_thread(ProcessFiles.read, child.process.pid, state))
    counts = [int(m.group(1)) if (m := TASK_LINE.search(d)) else -1 for d in dumps]
    return dumps, counts, readings


@dataclass
class Idle:
    """The daemon with no load: the fewest of `READINGS` readings."""

    conns: int
    fds: int
    tasks: int

    @classmethod
    async def read(cls, child: Daemon, state: Path, after: float) -> Idle:
        await asyncio.sleep(after)
        _, counts, readings = await fewest_of(child, state)
        return cls(min(r.conns for r in readings), min(r.fds for r in readings),
                   min(counts))


async def sample(child: Daemon, state: Path, started: float, events: int) -> Sample:
    pid = child.process.pid
    minute = (time.monotonic() - started) / 60
    dumps, counts, readings = await fewest_of(child, state)
    fewest = counts.index(min(counts))
    files = await asyncio.to_thread(ProcessFiles.read, pid, state)
    rows, kib, logical = await asyncio.to_thread(table_stats, state)
    return Sample(
        minute=minute,
        rss_mib=files.rss_mib,
        fds=min(r.fds for r in readings),
        conns=min(r.conns for r in readings),
        fds_other=min(r.fds - r.conns for r in readings),
        tasks=counts[fewest],
        tasks_other=min(tasks_other(d) for d in dumps),
        db_mib=files.db_mib,
        wal_mib=files.wal_mib,
        events=events,
        table_rows=rows,
        table_kib=kib,
        logical_mib=logical,
        task_names=task_groups(dumps[fewest]),
        load=float((await asyncio.to_thread(Path("/proc/loadavg").read_text)).split()[0]),
    )


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (per minute); 0 with fewer than two points."""
    if len(points) < 2:
        return 0.0
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


# -- the run ------------------------------------------------------------------------------


def events_accepted(load: Load, all_tenants: list[Tenant]) -> int:
    crm_acked, _ = crm_delivery_counts(all_tenants)
    return sum(load.acked.values()) + crm_acked


def print_sample(s: Sample) -> None:
    print(f"  t={s.minute:5.1f} min  rss={s.rss_mib:6.1f} MiB  fds={s.fds:4d}"
          f" (conns {s.conns:3d})  tasks={s.tasks:4d} (other {s.tasks_other:3d})"
          f"  db={s.db_mib:6.2f} MiB"
          f"  wal={s.wal_mib:5.2f} MiB  "
          f"events={s.events:6d}  inbox={s.table_rows.get('webhook_inbox', 0):6d}"
          f"  load={s.load:.2f}",
          flush=True)


async def soak(args: argparse.Namespace, directory: Path) -> int:
    async with tenants(args) as all_tenants:
        roots = {t.quo_key: t.quo_root for t in all_tenants}
        async with quo_router(roots) as router:
            port = free_port()
            config = write_config(directory, all_tenants, router, port, args)
            env = {}
            for tenant in all_tenants:
                env[f"SOAK_QUO_{tenant.id.upper()}"] = tenant.quo_key
                env[f"SOAK_ATTIO_{tenant.id.upper()}"] = tenant.attio_key
                tenant.phones = unique_phones(tenant.attio)
                tenant.people = [r.record_id for r in tenant.attio.people]
            base = f"http://127.0.0.1:{port}"
            state = directory / "state.db"
            timeout = aiohttp.ClientTimeout(total=10)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                daemon(config, env, base, directory / "daemon.log",
                       trace_frames=args.tracemalloc) as child,
            ):
                took = await wait_live(session, child, within=args.people * 2 + 180)
                before = await Idle.read(child, state, args.idle_seconds)
                print(f"{len(all_tenants)} tenants live after {took:.1f} s; idle"
                      f" {args.idle_seconds:.0f} s later: {before}", flush=True)
                print(f"soaking {args.minutes} min at {args.rate} events/s, a sample every"
                      f" {args.sample_seconds} s (warm-up {args.warmup_minutes} min)",
                      flush=True)
                samples, load = await run_load(session, child, state, all_tenants, args)
                after = await Idle.read(child, state, args.idle_seconds)
                code = await child.stop()
        return report(samples, load, all_tenants, child, code, args, (before, after))


async def scrape(session: aiohttp.ClientSession, child: Daemon, every: float, load: Load,
                 stop: asyncio.Event) -> None:
    """What a monitoring system does meanwhile: `/metrics`, `/status`, `/readyz`."""
    while not stop.is_set():
        for path in ("/metrics", "/status", "/readyz"):
            try:
                async with session.get(child.base + path) as answer:
                    await answer.read()
                    if answer.status != 200:
                        load.error("scrape", f"{path}: HTTP {answer.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                load.error("scrape", f"{path}: {type(exc).__name__}: {exc}")
            else:
                load.scrapes += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def run_load(session: aiohttp.ClientSession, child: Daemon, state: Path,
                   all_tenants: list[Tenant], args: argparse.Namespace,
                   ) -> tuple[list[Sample], Load]:
    load = Load()
    stop = asyncio.Event()
    driver = asyncio.create_task(drive(all_tenants, args, load, stop))
    scraper = asyncio.create_task(scrape(session, child, args.scrape_seconds, load, stop))
    started = time.monotonic()
    samples = []
    try:
        for k in range(int(args.minutes * 60 / args.sample_seconds) + 1):
            delay = started + k * args.sample_seconds - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if child.process.returncode is not None:
                raise SystemExit(f"daemon exited {child.process.returncode} mid-soak; log:"
                                 f" {child.log_path}")
            samples.append(await sample(child, state, started,
                                        events_accepted(load, all_tenants)))
            if args.tracemalloc:
                samples[-1].trace = await child.trace_snapshot()
            print_sample(samples[-1])
    finally:
        stop.set()
        await asyncio.gather(driver, scraper)
    return samples, load


@dataclass
class Verdict:
    series: str
    first: float
    last: float
    per_minute: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.per_minute <= self.tolerance


def verdicts(samples: list[Sample], warmup: float) -> tuple[list[Verdict], float, float]:
    """Per series the slope after the warm-up; also the bytes the tables that grow with
    events add per event, and events per minute."""
    kept = [s for s in samples if s.minute >= warmup - 1e-6]
    series = {
        "rss_mib": [s.rss_mib for s in kept],
        "fds_other": [float(s.fds_other) for s in kept],
        "tasks_other": [float(s.tasks_other) for s in kept],
        "wal_mib": [s.wal_mib for s in kept],
        "db_other_kib": [s.db_other_kib for s in kept],
    }
    result = []
    for name, values in series.items():
        points = [(s.minute, v) for s, v in zip(kept, values, strict=True)]
        result.append(Verdict(name, values[0], values[-1], slope(points), TOLERANCES[name]))
    events_per_min = slope([(s.minute, float(s.events)) for s in kept])
    bytes_per_min = slope([(s.minute, s.kib_of("event") * 1024) for s in kept])
    per_event = bytes_per_min / events_per_min if events_per_min > 0 else 0.0
    return result, per_event, events_per_min


def report(samples: list[Sample], load: Load, all_tenants: list[Tenant], child: Daemon,
           code: int, args: argparse.Namespace, idle: tuple[Idle, Idle]) -> int:
    failures = []
    kept = [s for s in samples if s.minute >= args.warmup_minutes - 1e-6]
    if len(kept) < 3:
        raise SystemExit(f"only {len(kept)} samples after the warm-up: run longer")
    results, per_event, events_per_min = verdicts(samples, args.warmup_minutes)
    first, last = kept[0], kept[-1]
    print(f"\nslopes per minute over {len(kept)} samples, t = {first.minute:.1f} to"
          f" {last.minute:.1f} min (machine load average {min(s.load for s in kept):.2f}"
          f" to {max(s.load for s in kept):.2f}, {os.cpu_count()} cores):")
    print(f"  {'series':<14}{'first':>10}{'last':>10}{'slope/min':>12}{'tolerance':>11}")
    for v in results:
        print(f"  {v.series:<14}{v.first:>10.2f}{v.last:>10.2f}{v.per_minute:>12.4f}"
              f"{v.tolerance:>11.2f}  {'ok' if v.ok else 'GROWING'}")
        if not v.ok:
            failures.append(f"{v.series} grows {v.per_minute:.4f}/min")
    for name in ("fds", "conns", "tasks"):
        points = [(s.minute, float(getattr(s, name))) for s in kept]
        print(f"  {name:<14}{points[0][1]:>10.2f}{points[-1][1]:>10.2f}"
              f"{slope(points):>12.4f}{'':>11}  (keep-alive pools: judged idle, below)")
    before, after = idle
    allowed = IDLE_TOLERANCE * args.minutes
    print(f"  idle {args.idle_seconds:.0f} s before the load -> after it (at most"
          f" +{allowed:.1f} each):")
    for name in ("conns", "fds", "tasks"):
        was, now = getattr(before, name), getattr(after, name)
        grown = now - was > allowed
        print(f"    {name:<10}{was:>6} -> {now:<6}{now - was:>+5}  {'GROWN' if grown else 'ok'}")
        if grown:
            failures.append(f"idle {name} {was} -> {now} after the load")
    db_slope = slope([(s.minute, s.db_mib) for s in kept])
    print(f"  db_mib (the file): {first.db_mib:.2f} -> {last.db_mib:.2f}, {db_slope:.4f} MiB/min;"
          f" tables growing with events {per_event * events_per_min / MIB:.4f} MiB/min ="
          f" {per_event:.0f} bytes per event x {events_per_min:.1f} events/min"
          f" (limit {BYTES_PER_EVENT_LIMIT:.0f} bytes per event)")
    if per_event > BYTES_PER_EVENT_LIMIT:
        failures.append(f"the tables grow {per_event:.0f} bytes per event")
    print(f"  tables: rows first -> last, rows/min, KiB/min (other tables: at most"
          f" {ROWS_TOLERANCE} rows/min)")
    for table in sorted(last.table_rows):
        rows_first, rows_last = first.table_rows.get(table, 0), last.table_rows[table]
        if not (rows_first or rows_last):
            continue
        rows_slope = slope([(s.minute, float(s.table_rows.get(table, 0))) for s in kept])
        kib_slope = slope([(s.minute, s.table_kib.get(table, 0.0)) for s in kept])
        growth = GROWS_WITH.get(table)
        if growth is not None and growth.pruned is not None:
            mark = f"per {growth.driver}, deleted {growth.pruned}"
        elif growth is not None and rows_slope > ROWS_TOLERANCE:
            mark = f"per {growth.driver}, GROWING: nothing deletes its rows"
            failures.append(f"{table} gains {rows_slope:.1f} rows/min and nothing deletes"
                            " them")
        elif rows_slope > ROWS_TOLERANCE:
            mark = "GROWING"
            failures.append(f"{table} gains {rows_slope:.1f} rows/min")
        else:
            mark = "ok"
        print(f"    {table:<20}{rows_first:>8} -> {rows_last:<8}{rows_slope:>8.1f}"
              f"{kib_slope:>9.2f}  {mark}")
    grown = {name: last.task_names[name] - first.task_names.get(name, 0)
             for name in last.task_names}
    changed = {k: v for k, v in (grown | {n: -c for n, c in first.task_names.items()
                                          if n not in last.task_names}).items() if v}
    print(f"  task names whose count changed: {changed or 'none'}")
    if first.trace is not None and last.trace is not None:
        print_allocation_growth(first.trace, last.trace, last.minute - first.minute)
    crm_acked, crm_failed = crm_delivery_counts(all_tenants)
    print(f"\nevents sent {dict(load.sent)}; Quo first attempts acknowledged"
          f" {dict(load.acked)}, failed {dict(load.failed)}; Attio deliveries acknowledged"
          f" {crm_acked}, never acknowledged {crm_failed}; monitoring reads answered"
          f" {load.scrapes}")
    for line in load.errors:
        print(f"  error: {line}")
    notes = sum(len(t.attio.notes) for t in all_tenants)
    print(f"notes in the CRMs: {notes}; daemon log lines by level and logger:"
          f" {dict(child.levels) or 'none'}")
    for line in child.samples[:10]:
        print(f"  log: {line}")
    print(f"daemon exit code after SIGTERM: {code}; tracebacks logged: {child.tracebacks}")
    if code != 0:
        failures.append(f"daemon exited {code}")
    if child.tracebacks:
        failures.append(f"{child.tracebacks} tracebacks logged")
    if sum(load.failed.values()) + crm_failed:
        failures.append("some webhooks were not acknowledged or some reads failed")
    print("FAIL: " + "; ".join(failures) if failures else "PASS", flush=True)
    return 1 if failures else 0


def print_allocation_growth(before: Path, after: Path, minutes: float) -> None:
    """Where the child's traced memory grew between two snapshots (top sites)."""
    old, new = tracemalloc.Snapshot.load(str(before)), tracemalloc.Snapshot.load(str(after))
    total = sum(s.size for s in new.statistics("filename")) - sum(
        s.size for s in old.statistics("filename"))
    print(f"  traced memory: {total / 1024:+.0f} KiB over {minutes:.1f} min; top lines:")
    for stat in new.compare_to(old, "lineno")[:12]:
        print(f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  "
              f"{stat.traceback[0]}")
    for stat in new.compare_to(old, "traceback")[:3]:
        if stat.size_diff <= 0:
            break
        print(f"  {stat.size_diff / 1024:+.1f} KiB allocated at:")
        for line in stat.traceback.format(limit=8, most_recent_first=True):
            print(f"    {line}")


@contextlib.contextmanager
def state_directory(path: str | None) -> Iterator[Path]:
    if path:
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=False)
        yield directory
    else:
        with tempfile.TemporaryDirectory(prefix="crmsync-soak-") as tmp:
            yield Path(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="how long to soak")
    parser.add_argument("--sample-seconds", type=float, default=60.0,
                        help="seconds between samples")
    parser.add_argument("--warmup-minutes", type=float, default=None,
                        help="samples before this are left out of the slopes"
                             " (default: 5, or a third of a run shorter than 15 min)")
    parser.add_argument("--tenants", type=int, default=20)
    parser.add_argument("--people", type=int, default=40, help="Attio people per tenant")
    parser.add_argument("--rate", type=float, default=5.0, help="events per second, in all")
    parser.add_argument("--sms-share", type=float, default=0.5)
    parser.add_argument("--call-share", type=float, default=0.15)
    parser.add_argument("--summary-share", type=float, default=0.1)
    parser.add_argument("--crm-share", type=float, default=0.25)
    parser.add_argument("--poll-interval", type=float, default=10.0,
                        help="each tenant's poll_interval (at least 5)")
    parser.add_argument("--quo-rps", type=int, default=10, help="Quo limit per key")
    parser.add_argument("--scrape-seconds", type=float, default=15.0,
                        help="seconds between reads of /metrics, /status and /readyz")
    parser.add_argument("--idle-seconds", type=float, default=45.0,
                        help="idle time before the load and after it, then connections,"
                             " fds and tasks are read (longer than the keep-alive time"
                             " of the pools, 15 s, and their cleanup period)")
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="diagnostics: trace the child's allocations (FRAMES deep) and"
                             " print where memory grew after the warm-up (slow; RSS"
                             " figures then include tracemalloc's own)")
    parser.add_argument("--state-dir", help="keep the config, database and log here"
                        " (a new directory; default: a temporary one)")
    args = parser.parse_args()
    if args.warmup_minutes is None:
        args.warmup_minutes = 5.0 if args.minutes >= 15 else args.minutes / 3
    with state_directory(args.state_dir) as directory:
        code = asyncio.run(soak(args, directory))
    sys.exit(code)


if __name__ == "__main__":
    main()
