"""Rate-limiter benchmark: C concurrent callers share one key's limiter for T seconds.

    python bench/rate_limit.py [--callers 50] [--seconds 10] [--limit 10]

Prints the simulator's max requests in any sliding one-second window ÷ limit (must be
≤ 1), 429s (must be 0), and utilisation: requests started per second ÷ limit, both
over the whole run and sustained after the first burst (ideal: 1 / (1 + margin) for
the send basis, 1 / (1 + margin + round-trip) for the response basis, in between for
the adaptive one; `bench/wan.py` measures them over a delayed network).
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from crmsync.net.ratelimit import Basis, Lane, SlidingWindowLimiter, Slot, slot_trace_config
from crmsync.quo.client import QuoClient
from crmsync.sim.quo import QuoSimConfig, run_quo_simulator

KEY = "bench-key"


class RecordingLimiter(SlidingWindowLimiter):
    """Remembers when each slot was granted."""

    grants: list[float]

    async def acquire(self, lane: Lane = Lane.BACKFILL) -> Slot:
        slot = await super().acquire(lane)
        self.grants.append(self.now())
        return slot


async def bench(callers: int, seconds: float, limit: int, margin: float, basis: Basis) -> None:
    config = QuoSimConfig(api_keys=[KEY], requests_per_second=limit)
    async with (
        run_quo_simulator(config=config) as (sim, base_url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as session,
    ):
        limiter = RecordingLimiter(limit, window=1.0 + margin, basis=basis)
        limiter.grants = []
        client = QuoClient(session, base_url=base_url, api_key=KEY, limiter=limiter, tenant="b")
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + seconds

        async def caller() -> None:
            while loop.time() < deadline:
                await client.list_phone_numbers()

        async with asyncio.TaskGroup() as tg:
            for _ in range(callers):
                tg.create_task(caller())
    in_time = [t for t in limiter.grants if t < deadline]
    overall = len(in_time) / seconds / limit
    # After the first burst of `limit`, the sustained rate: grants per second between
    # the first grant and the last one.
    steady = (len(in_time) - limit) / (in_time[-1] - in_time[0]) / limit
    print(
        f"callers={callers} seconds={seconds:g} limit={limit} margin={margin:g} basis={basis} "
        f"max_in_any_1s_window/limit={max(sim.max_in_any_window.values()) / limit:.2f} "
        f"429s={sim.stats.rate_limited} utilisation={overall:.3f} "
        f"steady_state_utilisation={steady:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--callers", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--margin", type=float, default=0.02)
    parser.add_argument("--basis", choices=["adaptive", "response", "send"], default="response")
    args = parser.parse_args()
    asyncio.run(bench(args.callers, args.seconds, args.limit, args.margin, args.basis))


if __name__ == "__main__":
    main()
