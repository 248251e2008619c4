"""WAN benchmark: the real `crmsync sync` reaches the Quo simulator through a delay proxy.

    python bench/wan.py [--contacts 1000] [--limit 10] [--bases response,send,adaptive]
                        [--cases 0,50,100,200,100/10,100/30]

A case is a round trip in milliseconds, optionally with jitter: `100/10` is 50 ms
± 10 ms each way (uniform, drawn anew for every chunk, which is one request or one
answer here; a connection still delivers its bytes in order). The proxy is a plain
TCP relay on 127.0.0.1 between `crmsync sync` (a child process, as in
`initial_sync.py`) and the Quo simulator (this process); the Attio simulator is
reached directly. Every (case, basis) pair syncs `--contacts` people into an empty
Quo and prints one line:

- utilisation: (requests - limit) ÷ limit ÷ (last arrival - first arrival), arrivals
  as the simulator counts them: the steady rate under the backlog, as in
  `rate_limit.py` (the first `limit` requests are the burst that starts the run);
- wall: requests ÷ limit ÷ the `crmsync sync` process's run time (interpreter start,
  the warm limiter's first window and the CRM's first page included);
- 429s (must be 0) and the most requests the simulator saw in any sliding second
  (must be ≤ limit);
- the machine's load average at the end of the case (a loaded machine stretches the
  proxy's and the simulator's delays: compare like with like).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import random
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import Sims, run_cli, simulators, write_config

from crmsync.sim.quo.ratelimit import SlidingWindowGate
from crmsync.sim.quo.stats import QuoSimStats

BASES = ("response", "send", "adaptive")
CASES = "0,50,100,200,100/10,100/30"
CHUNK = 64 * 1024


@dataclasses.dataclass(frozen=True)
class Case:
    """A network: round trip and per-direction jitter, in seconds."""

    rtt: float
    jitter: float

    @classmethod
    def parse(cls, text: str) -> Case:
        rtt, _, jitter = text.partition("/")
        return cls(float(rtt) / 1000, float(jitter or 0) / 1000)

    @property
    def label(self) -> str:
        return f"rtt={self.rtt * 1000:g}ms jitter=±{self.jitter * 1000:g}ms/way"


class DelayProxy:
    """Relays TCP connections to `upstream`, delaying every chunk in each direction by
    one-way delay ± jitter (uniform), never reordering a connection's bytes."""

    def __init__(self, upstream: tuple[str, int], case: Case, seed: int = 1) -> None:
        self._upstream = upstream
        self._one_way = case.rtt / 2
        self._jitter = case.jitter
        if self._jitter > self._one_way:
            raise ValueError("jitter larger than the one-way delay")
        self._rng = random.Random(seed)
        self._connections: set[asyncio.Task[None]] = set()

    def _delay(self) -> float:
        return self._one_way + self._rng.uniform(-self._jitter, self._jitter)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """Copy src to dst, each chunk delivered its own delay after it was read."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def receive() -> None:
            last = 0.0
            try:
                while chunk := await src.read(CHUNK):
                    # A later draw may be shorter: TCP still delivers in order.
                    last = max(last, loop.time() + self._delay())
                    queue.put_nowait((last, chunk))
            except ConnectionError:
                pass
            queue.put_nowait((last, b""))  # end of stream, after everything before it

        async def deliver() -> None:
            while True:
                deliver_at, chunk = await queue.get()
                wait = deliver_at - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)  # the network's delay itself
                if not chunk:
                    if dst.can_write_eof():
                        dst.write_eof()
                    return
                dst.write(chunk)
                await dst.drain()

        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(receive())
            tasks.create_task(deliver())

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        try:
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._pipe(reader, up_writer))
                tasks.create_task(self._pipe(up_reader, writer))
        except* (ConnectionError, OSError):
            pass  # a side hung up mid-chunk: the connection is over either way
        finally:
            for side in (writer, up_writer):
                side.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await side.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.get_running_loop().create_task(self._relay(reader, writer))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator[int]:
        """Listen on a free loopback port; yield it; close every relay on exit."""
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()


class RecordingGate(SlidingWindowGate):
    """The simulator's gate, also remembering every arrival's time."""

    def __init__(self, rate: int, window: float, *, count_rejected: bool) -> None:
        super().__init__(rate, window, count_rejected=count_rejected)
        self.arrivals: list[float] = []

    def arrive(self, key: str, *, force_reject: bool = False) -> bool:
        self.arrivals.append(time.monotonic())  # the gate's own clock
        return super().arrive(key, force_reject=force_reject)


def record_arrivals(sims: Sims) -> RecordingGate:
    """Swap the Quo simulator's gate for a recording one before any request."""
    sim = sims.quo
    gate = RecordingGate(sim.gate.rate, sim.gate.window, count_rejected=sim.gate.count_rejected)
    sim.gate = gate
    sim.stats = QuoSimStats(gate)
    return gate


async def bench(case: Case, basis: str, contacts: int, limit: int) -> dict[str, float]:
    async with simulators(contacts, limit) as sims:
        gate = record_arrivals(sims)
        upstream = sims.quo_url.removeprefix("http://").split("/", 1)[0]
        host, port = upstream.rsplit(":", 1)
        proxy = DelayProxy((host, int(port)), case)
        async with proxy.serve() as proxy_port:
            via_proxy = dataclasses.replace(sims, quo_url=f"http://127.0.0.1:{proxy_port}/v1")
            with tempfile.TemporaryDirectory() as tmp:
                config = write_config(Path(tmp), via_proxy, limit, bulk=False, page_size=100)
                text = config.read_text()
                config.write_text(text.replace("[quo]\n", f'[quo]\nrate_limit_basis = "{basis}"\n'))
                async with asyncio.timeout(contacts / limit * 3 + 120):
                    run = await run_cli("sync", "--tenant", "bench", "-c", str(config))
        if run.returncode != 0:
            raise SystemExit(f"{case.label} {basis}: crmsync sync exited {run.returncode}:\n"
                             f"{run.stderr}")
        stats = sims.quo.stats
        requests = stats.total_requests
        arrivals = gate.arrivals
        span = arrivals[-1] - arrivals[0]
        return {
            "utilisation": (len(arrivals) - limit) / limit / span,
            "wall": requests / limit / run.elapsed,
            "429s": stats.rate_limited,
            "max_per_sliding_second": max(stats.max_in_any_window.values()),
            "requests": requests,
            "contacts_in_quo": len(sims.quo.contacts.contacts),
            "elapsed_s": run.elapsed,
            # The machine's 1-minute load at the end: other work there stretches delays.
            "load": os.getloadavg()[0],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--cases", default=CASES,
                        help=f"round trips in ms, RTT/JITTER for ± jitter each way ({CASES})")
    parser.add_argument("--bases", default=",".join(BASES))
    args = parser.parse_args()
    cases = [Case.parse(text) for text in args.cases.split(",")]
    bases = args.bases.split(",")
    for basis in bases:
        if basis not in BASES:
            parser.error(f"unknown basis {basis!r}; choose from {', '.join(BASES)}")
    for case in cases:
        for basis in bases:
            result = asyncio.run(bench(case, basis, args.contacts, args.limit))
            print(f"{case.label:<28} basis={basis:<9} " + "  ".join(
                f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                for k, v in result.items()
            ), flush=True)


if __name__ == "__main__":
    main()
