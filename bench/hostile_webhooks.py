"""Hostile-webhook benchmark: how long one bad Quo delivery holds the listener's event loop,
and whether `/readyz` and `/healthz` stay prompt under a flood of them.

    python bench/hostile_webhooks.py [--seconds 30] [--rate 50] [--keys 8]
                                     [--entries 300] [--body-bytes 1048576]
                                     [--shape hostile|admissible] [--sources 1]

The listener runs in a child process (`--serve`): the real `build_app` with a real
SQLite state database holding `--keys` Quo webhook keys for one tenant, served on
127.0.0.1 by the stdlib asyncio loop in debug mode with `slow_callback_duration` at
1 ms, so every callback that holds the loop 1 ms or more is logged and measured (debug
mode makes the loop a little slower, so the figures are on the pessimistic side). The
parent sends the attack and probes readiness from its own process:

1. **one request**, three times in a row, of each shape: `hostile` (a 1 MiB JSON body
   and an `openphone-signature` header of `--entries` entries with distinct fresh
   timestamps and short digests, the most a header of 8 KiB holds) and `admissible`
   (the same body with the most entries the listener examines, each a full 32-byte
   digest: the worst request that is not refused outright). Prints the answers and the
   longest loop-blocking callback each caused.
2. **flood**: requests of `--shape` open-loop at `--rate` per second for `--seconds`,
   spread round-robin over `--sources` client addresses (127.0.0.2, 127.0.0.3, …: the
   listener throttles per address), while `/readyz` and `/healthz` are each probed
   every 100 ms from 127.0.0.1 on a separate connection pool (a probe that takes over
   2 s counts as failed). Prints the answers to the flood by status, the probes'
   p50/p99/max latency and failures, the longest loop-blocking callback during the
   flood, and how often the listener read the webhook keys from the database.

Everything is sent to 127.0.0.1 and the run ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from crmsync.adapters.attio import AttioAdapter
from crmsync.config import Config, DaemonConfig, Secret, TenantConfig
from crmsync.quo.signature import HEADER
from crmsync.store import open_store
from crmsync.store.subscriptions import Subscription
from crmsync.web.app import build_app, serve
from crmsync.web.health import Health
from crmsync.web.targets import WebhookTarget

TENANT = "bench"
#: the entries the fixed listener still examines (crmsync.quo.signature.MAX_ENTRIES)
ADMISSIBLE_ENTRIES = 8
PROBE_EVERY = 0.1
PROBE_TIMEOUT = 2.0
SLOW_CALLBACK = 0.001


# -- the child: the listener, measured ---------------------------------------------------


class LoopBlocking(logging.Handler):
    """Collects the durations asyncio's debug mode logs for slow callbacks."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.durations: list[float] = []
        self.slowest = ""

    def emit(self, record: logging.LogRecord) -> None:
        seconds = record.args[-1] if isinstance(record.args, tuple) and record.args else None
        if record.getMessage().startswith("Executing ") and isinstance(seconds, float):
            if seconds > max(self.durations, default=0.0):
                self.slowest = record.getMessage()[:300]
            self.durations.append(seconds)

    def take(self) -> dict[str, float | str]:
        durations, self.durations = self.durations, []
        slowest, self.slowest = self.slowest, ""
        return {
            "max_ms": max(durations, default=0.0) * 1000,
            "total_ms": sum(durations) * 1000,
            "slow_callbacks": float(len(durations)),
            "slowest": slowest,
        }


async def serve_listener(keys: int) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK
    blocking = LoopBlocking()
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(blocking)
    asyncio_log.propagate = False  # measured, not printed
    with tempfile.TemporaryDirectory() as tmp:
        tenant = TenantConfig(
            id=TENANT, crm="attio", quo_api_key=Secret("env:BENCH_QUO", "q"),
            crm_api_key=Secret("env:BENCH_ATTIO", "a"), crm_base_url="http://127.0.0.1:9/v2",
        )
        config = Config(daemon=DaemonConfig(state_path=str(Path(tmp) / "state.db")),
                        tenants=(tenant,))
        async with (
            open_store(config.daemon.state_path) as store,
            aiohttp.ClientSession() as http,
        ):
            await store.tenants.upsert(TENANT, "attio")
            for n in range(keys):
                await store.subscriptions.upsert(Subscription(
                    tenant_id=TENANT, source="quo", name=f"quo:{n}", remote_id=f"wh-{n}",
                    secret=base64.b64encode(os.urandom(32)).decode(), url="http://x/",
                    detail="{}", healthy=True, checked_at=time.time(),
                ))
            reads = Counter[str]()
            real_secrets = store.subscriptions.secrets

            async def counted_secrets(tenant_id: str, source: Any) -> list[str]:
                reads["secret_reads"] += 1
                return await real_secrets(tenant_id, source)

            store.subscriptions.secrets = counted_secrets  # type: ignore[method-assign]
            adapter = AttioAdapter(http, api_key="a", base_url="http://127.0.0.1:9/v2")
            target = WebhookTarget.for_tenant(config, tenant, adapter=adapter, store=store)
            app = build_app(targets={TENANT: target}.get, store=store,
                            config=lambda: config, health=Health(),
                            max_body_bytes=config.http.max_body_bytes)

            async def loop_stats(_: web.Request) -> web.Response:
                stats = blocking.take() | {"secret_reads": float(reads.pop("secret_reads", 0))}
                return web.json_response(stats)

            app.router.add_get("/_bench/loop", loop_stats)
            stop = asyncio.Event()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            async with serve(app, "127.0.0.1", 0, shutdown_timeout=1.0) as port:
                print(f"PORT {port}", flush=True)
                await stop.wait()


# -- the parent: the attack and the probes -----------------------------------------------


def hostile_body(size: int) -> bytes:
    """Valid, pretty-printed JSON of `size` bytes: its compact form differs, so the old
    verifier hashed both forms."""
    event = {"id": "EVbench", "object": "event", "type": "message.received", "pad": ""}
    event["pad"] = "x" * (size - len(json.dumps(event, indent=2).encode()))
    body = json.dumps(event, indent=2).encode()
    assert len(body) == size
    return body


def signature_header(entries: int, digest_bytes: int) -> str:
    now_ms = int(time.time() * 1000)
    digest = base64.b64encode(b"\0" * digest_bytes).decode()
    # Distinct timestamps, all fresh: no two entries can share one HMAC computation.
    return ",".join(f"hmac;1;{now_ms - i};{digest}" for i in range(entries))


@dataclass
class Probes:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"readyz": [], "healthz": []})
    failures: Counter[str] = field(default_factory=Counter)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@contextlib.asynccontextmanager
async def child_listener(keys: int) -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", "--keys", str(keys),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            line = (await proc.stdout.readline()).decode()
        if not line.startswith("PORT "):
            raise SystemExit(f"the listener did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:  # a wedged loop never sees the signal's wake-up
                proc.kill()
                await proc.wait()


async def loop_stats(base: str) -> dict[str, Any] | None:
    """The child's loop-blocking figures since the last call (None: it did not answer)."""
    timeout = aiohttp.ClientTimeout(total=15)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(base + "/_bench/loop") as response,
        ):
            stats: dict[str, Any] = await response.json()
            return stats
    except (aiohttp.ClientError, TimeoutError):
        return None


async def post(session: aiohttp.ClientSession, url: str, body: bytes, header: str) -> str:
    try:
        async with session.post(url, data=body, headers={
            "Content-Type": "application/json", HEADER: header,
        }) as response:
            await response.read()
            return str(response.status)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return type(exc).__name__


async def one_request(base: str, body: bytes, header: str) -> dict[str, Any]:
    await loop_stats(base)  # reset
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        started = time.monotonic()
        status = await post(session, f"{base}/webhooks/{TENANT}/quo", body, header)
        elapsed = (time.monotonic() - started) * 1000
    stats = await loop_stats(base) or {}
    return {"status": status, "answer_ms": elapsed, **stats}


async def probe(base: str, probes: Probes, stop: asyncio.Event) -> None:
    timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while not stop.is_set():
            for route in ("readyz", "healthz"):
                started = time.monotonic()
                try:
                    async with session.get(f"{base}/{route}") as response:
                        await response.read()
                        ok = response.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                probes.latencies[route].append((time.monotonic() - started) * 1000)
                if not ok:
                    probes.failures[route] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROBE_EVERY)


def shape_header(args: argparse.Namespace) -> str:
    if args.shape == "admissible":
        return signature_header(ADMISSIBLE_ENTRIES, 32)
    return signature_header(args.entries, 3)


async def flood(base: str, args: argparse.Namespace, body: bytes) -> dict[str, Any]:
    await loop_stats(base)  # reset
    probes = Probes()
    stop = asyncio.Event()
    prober = asyncio.create_task(probe(base, probes, stop))
    statuses: Counter[str] = Counter()
    tasks: set[asyncio.Task[None]] = set()
    url = f"{base}/webhooks/{TENANT}/quo"
    timeout = aiohttp.ClientTimeout(total=10)
    async with contextlib.AsyncExitStack() as stack:
        sessions = [
            await stack.enter_async_context(aiohttp.ClientSession(
                timeout=timeout,
                connector=aiohttp.TCPConnector(limit=100, local_addr=(f"127.0.0.{2 + n}", 0)),
            ))
            for n in range(args.sources)
        ]

        async def one(session: aiohttp.ClientSession) -> None:
            statuses[await post(session, url, body, shape_header(args))] += 1

        start = time.monotonic()
        for i in range(int(args.rate * args.seconds)):
            delay = start + i / args.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(sessions[i % len(sessions)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        # Answers still owed after the window get the client timeout, no more.
        await asyncio.gather(*tasks)
    stop.set()
    await prober
    stats = await loop_stats(base)
    result: dict[str, Any] = {"answers": dict(sorted(statuses.items()))}
    for route, values in probes.latencies.items():
        result[route] = {
            "probes": len(values), "failed": probes.failures[route],
            "p50_ms": round(percentile(values, 0.50), 1),
            "p99_ms": round(percentile(values, 0.99), 1),
            "max_ms": round(max(values, default=math.nan), 1),
        }
    result["loop"] = stats if stats is not None else "no answer (loop wedged)"
    return result


async def bench(args: argparse.Namespace) -> None:
    body = hostile_body(args.body_bytes)
    async with child_listener(args.keys) as base:
        for name, header in (
            ("hostile", lambda: signature_header(args.entries, 3)),
            ("admissible", lambda: signature_header(ADMISSIBLE_ENTRIES, 32)),
        ):
            for attempt in range(3):
                result = await one_request(base, body, header())
                print(json.dumps({"phase": f"one {name} request #{attempt + 1}", **result}),
                      flush=True)
        if args.seconds > 0:
            result = await flood(base, args, body)
            phase = (f"flood of {args.shape} requests, {args.rate}/s for {args.seconds} s"
                     f" from {args.sources} address(es)")
            print(json.dumps({"phase": phase, **result}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="flood duration (0: none)")
    parser.add_argument("--rate", type=float, default=50.0, help="hostile requests per second")
    parser.add_argument("--keys", type=int, default=8, help="Quo webhook keys stored")
    parser.add_argument("--entries", type=int, default=300, help="signature entries per header")
    parser.add_argument("--body-bytes", type=int, default=1024 * 1024, help="body size")
    parser.add_argument("--shape", choices=("hostile", "admissible"), default="hostile",
                        help="the flood's requests (see the module docstring)")
    parser.add_argument("--sources", type=int, default=1, choices=range(1, 201),
                        metavar="1..200", help="client addresses the flood comes from")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve_listener(args.keys))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
