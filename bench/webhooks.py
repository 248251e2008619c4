"""Webhook benchmark: signed Quo `message.received` events at a fixed rate into `crmsync run`.

    python bench/webhooks.py [--rate 500] [--seconds 20] [--people 200]
                             [--sample-every 50] [--attio-write-rate 25]
                             [--system legacy|2026-03-30]

The simulators run in this process, the daemon (`crmsync run`) in a child process.
After the initial sync, events with distinct ids (messages from known phones, plus a
share of unknown ones) are sent open-loop to `/webhooks/<tenant>/quo`, through the
webhook system `--system` names, which is also the daemon's `quo.webhooks`:

* `legacy` (default): legacy envelopes (`data.object`) POSTed by this script, signed
  with `openphone-signature` and the legacy key the daemon registered.
* `2026-03-30`: each SMS is published by the Quo simulator itself (`QuoSim.publish`:
  the new envelope, `data.resource/context/links`, signed the Standard Webhooks way
  with the `whsec_` key of the webhook the daemon registered, logged and retried like
  Quo's); the ack is the time that publish took for its first attempt.

Prints one line:

    ack_p50_ms ack_p99_ms   client-side request → 2xx (the listener's durable commit)
    achieved_rate           2xx acks per second over the sending window
    note_p95_ms             send → note visible in the Attio simulator, every Nth
                            known-phone event (polled every 20 ms; `inf` if some
                            sampled note had not appeared by the drain deadline)
    notes                   notes in Attio at the end (expected_notes: one per known-phone
                            event and person with that phone)
    errors                  non-2xx answers and transport errors

Notes are Attio writes: at Attio's real limit (25 writes/s) a sustained 500 events/s
cannot be logged as fast as it arrives; `--attio-write-rate` raises the simulator's
limit to measure crmsync's own processing capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import math
import os
import random
import re
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).parent))

from common import CRM_KEY, QUO_KEY, Sims, daemon_process, write_config

from crmsync.quo.signature import HEADER, sign
from crmsync.sim.attio import AttioSimConfig, run_attio_simulator
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator

SYSTEMS = ("legacy", "2026-03-30")

TENANT = "bench"
MARKER = re.compile(r"quo:(\S+)")
UNKNOWN_PHONES = [f"+1202555{n:04d}" for n in range(100, 200)]  # valid, never seeded


@dataclass
class Results:
    ack_ms: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    sampled_sent: dict[str, float] = field(default_factory=dict)  # message id -> send time
    note_ms: dict[str, float] = field(default_factory=dict)
    first_send: float = 0.0
    last_ack: float = 0.0
    last_note: float = 0.0
    sending_done: bool = False
    all_sampled: asyncio.Event = field(default_factory=asyncio.Event)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@contextlib.asynccontextmanager
async def simulators(people: int, rps: int, attio_write_rate: int) -> AsyncIterator[Sims]:
    quo_config = QuoSimConfig(api_keys=[QUO_KEY], requests_per_second=rps)
    attio_config = AttioSimConfig(
        api_keys=[CRM_KEY], people=people, seed=42, write_rate_per_second=attio_write_rate
    )
    async with (
        run_quo_simulator(config=quo_config) as (quo, quo_url),
        run_attio_simulator(config=attio_config) as (attio, attio_url),
    ):
        yield Sims(quo, quo_url, attio, attio_url)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def daemon(config: Path, log: Path) -> contextlib.AbstractAsyncContextManager[
        asyncio.subprocess.Process]:
    env = dict(os.environ, BENCH_QUO_KEY=QUO_KEY, BENCH_ATTIO_KEY=CRM_KEY)
    return daemon_process(config, env, log)


async def wait_live(session: aiohttp.ClientSession, base: str,
                    proc: asyncio.subprocess.Process, log: Path) -> None:
    async with asyncio.timeout(120):
        while True:
            if proc.returncode is not None:
                output = await asyncio.to_thread(log.read_text)
                raise SystemExit(f"daemon exited {proc.returncode}:\n{output}")
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(base + "/readyz") as ready:
                    if ready.status == 200:
                        async with session.get(base + "/status") as status:
                            tenants = (await status.json())["tenants"]
                        if tenants[0]["phase"] == "live":
                            return
            await asyncio.sleep(0.1)


async def watch_notes(sims: Sims, results: Results, stop: asyncio.Event) -> None:
    """Poll the Attio sim's notes; time the sampled ones as they appear."""
    seen = 0
    while not stop.is_set():
        notes = sims.attio.notes
        if len(notes) < seen:  # a note was deleted: rescan (message notes never are)
            seen = 0
        now = time.monotonic()
        for note in itertools.islice(notes.values(), seen, None):
            match = MARKER.search(note["content_markdown"])
            sent = results.sampled_sent.get(match.group(1)) if match else None
            if sent is not None and match and match.group(1) not in results.note_ms:
                results.note_ms[match.group(1)] = (now - sent) * 1000
            results.last_note = now
        seen = len(notes)
        if results.sending_done and len(results.note_ms) >= len(results.sampled_sent):
            results.all_sampled.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.02)


async def fire(session: aiohttp.ClientSession, url: str, body: bytes, key: str,
               results: Results) -> None:
    headers = {"Content-Type": "application/json", HEADER: sign(key, body)}
    started = time.monotonic()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            status = response.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        record_error(results, f"{type(exc).__name__}: {exc}")
        return
    done = time.monotonic()
    if 200 <= status < 300:
        results.ack_ms.append((done - started) * 1000)
        results.last_ack = max(results.last_ack, done)
    else:
        record_error(results, f"HTTP {status}")


async def publish(quo: QuoSim, message: dict[str, object], results: Results) -> None:
    """One SMS through the new system: the simulator signs, delivers and logs it."""
    resource, context, links = quo.payloads.message(message)
    started = time.monotonic()
    try:
        publication = await quo.publish(
            "message.received", resource, context=context, links=links
        )
    except Exception as exc:  # the bench reports, whatever went wrong
        record_error(results, f"{type(exc).__name__}: {exc}")
        return
    done = time.monotonic()
    statuses = [d.attempts[0].response_status_code for d in publication.deliveries
                if d.attempts]
    if statuses and all(200 <= s < 300 for s in statuses):
        results.ack_ms.append((done - started) * 1000)
        results.last_ack = max(results.last_ack, done)
    else:
        record_error(results, f"HTTP {statuses or 'no delivery'}")


def record_error(results: Results, sample: str) -> None:
    results.errors += 1
    if len(results.error_samples) < 5:
        results.error_samples.append(sample)


def with_webhook_system(config: Path, system: str, quo_root: str) -> None:
    """Name the daemon's Quo webhook system in the `[quo]` table (and where its API is)."""
    text = config.read_text()
    if "\nwebhooks =" not in text:
        lines = f'webhooks = "{system}"\nwebhooks_base_url = "{quo_root}"\n'
        text = text.replace("[quo]\n", "[quo]\n" + lines, 1)
        config.write_text(text)


async def bench(args: argparse.Namespace) -> dict[str, float | int | str]:
    rng = random.Random(7)
    async with simulators(args.people, args.quo_rps, args.attio_write_rate) as sims:
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            config = write_config(Path(tmp), sims, args.quo_rps, bulk=False, page_size=100)
            with_webhook_system(config, args.system, sims.quo_url.removesuffix("/v1"))
            with config.open("a") as file:
                file.write(f'\n[http]\nhost = "127.0.0.1"\nport = {port}\npublic_url = "{base}"\n')
            log = Path(tmp) / "daemon.log"
            timeout = aiohttp.ClientTimeout(total=30)
            connector = aiohttp.TCPConnector(limit=args.connections)
            async with (
                aiohttp.ClientSession(timeout=timeout, connector=connector) as session,
                daemon(config, log) as proc,
            ):
                await wait_live(session, base, proc, log)
                hooks = sims.quo.webhooks if args.system == "legacy" else sims.quo.webhooks_v2
                (key,) = [w["key"] for w in hooks.values() if "message.received" in w["events"]]
                owners: dict[str, int] = {}  # phone -> people having it (one note each)
                for record in sims.attio.people:
                    for phone in set(sims.attio.person_phones(record.record_id)):
                        owners[phone] = owners.get(phone, 0) + 1
                result = await blast(args, sims, session, f"{base}/webhooks/{TENANT}/quo",
                                     key, owners, rng)
                if proc.returncode is not None:
                    output = await asyncio.to_thread(log.read_text)
                    raise SystemExit(f"daemon died ({proc.returncode}):\n{output}")
            return result


async def blast(args: argparse.Namespace, sims: Sims, session: aiohttp.ClientSession,
                url: str, key: str, owners: dict[str, int], rng: random.Random,
                ) -> dict[str, float | int | str]:
    known = sorted(owners)
    results = Results()
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_notes(sims, results, stop))
    total = int(args.rate * args.seconds)
    expected = 0
    known_sent = 0
    tasks: set[asyncio.Task[None]] = set()
    notes_before = len(sims.attio.notes)
    start = results.first_send = time.monotonic()
    for i in range(total):
        delay = start + i / args.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        is_known = rng.random() >= args.unknown_share
        phone = rng.choice(known) if is_known else rng.choice(UNKNOWN_PHONES)
        message = sims.quo.add_message(phone, f"bench message {i}",
                                       message_id=f"AC{uuid.uuid4().hex}")
        if is_known:
            expected += owners[phone]
            known_sent += 1
            if known_sent % args.sample_every == 1 or args.sample_every == 1:
                results.sampled_sent[message["id"]] = time.monotonic()
        if args.system != "legacy":
            task = asyncio.create_task(publish(sims.quo, message, results))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            continue
        envelope = {
            "id": f"EV{uuid.uuid4().hex}", "object": "event", "apiVersion": "v4",
            "type": "message.received",
            "data": {"object": sims.quo.workspace.message_event_object(message)},
        }
        task = asyncio.create_task(fire(session, url, msgspec.json.encode(envelope), key,
                                        results))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    send_window = time.monotonic() - start
    await asyncio.gather(*tasks)
    ack_window = (results.last_ack or time.monotonic()) - start
    results.sending_done = True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(results.all_sampled.wait(), args.drain_timeout)
    stop.set()
    await watcher
    samples = [results.note_ms.get(m, math.inf) for m in results.sampled_sent]
    notes = len(sims.attio.notes) - notes_before
    return {
        "system": args.system,
        "ack_p50_ms": percentile(results.ack_ms, 0.50),
        "ack_p99_ms": percentile(results.ack_ms, 0.99),
        "achieved_rate": len(results.ack_ms) / ack_window if ack_window > 0 else math.nan,
        "note_p95_ms": percentile(samples, 0.95),
        "notes": notes,
        "errors": results.errors,
        "sent": total,
        "send_window_s": send_window,
        "expected_notes": expected,
        "note_samples": len(samples),
        "note_samples_missing": sum(1 for s in samples if math.isinf(s)),
        "note_p50_ms": percentile(samples, 0.50),
        "notes_per_s": notes / max(1e-9, results.last_note - start) if notes else 0.0,
        "error_samples": "|".join(results.error_samples) or "-",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to send")
    parser.add_argument("--people", type=int, default=200, help="seeded Attio people")
    parser.add_argument("--sample-every", type=int, default=50,
                        help="time the note of every Nth known-phone event")
    parser.add_argument("--unknown-share", type=float, default=0.1,
                        help="share of events from phones no person has")
    parser.add_argument("--quo-rps", type=int, default=100, help="Quo rate limit (sim+config)")
    parser.add_argument("--attio-write-rate", type=int, default=25,
                        help="Attio simulator writes per second (Attio's real limit: 25)")
    parser.add_argument("--connections", type=int, default=256,
                        help="client connection pool size")
    parser.add_argument("--drain-timeout", type=float, default=60.0,
                        help="seconds to wait for sampled notes after the last ack")
    parser.add_argument("--system", choices=SYSTEMS, default="legacy",
                        help="the Quo webhook system the events come through")
    args = parser.parse_args()
    result = asyncio.run(bench(args))
    print("  ".join(
        f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
    ), flush=True)


if __name__ == "__main__":
    main()
