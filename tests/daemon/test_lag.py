"""`probe_lag`: how late the loop ran a timer, observed every interval.

1. the probe runs on an idle loop for a few intervals
2. a callback holds the loop for 50 ms (a blocking call)
Result: 1. every observation is small and none is negative; 2. one observation is at
least about the 50 ms the loop was held.
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import REGISTRY

from crmsync.daemon.lag import DAEMON_LABEL, probe_lag


class Samples:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.seen = asyncio.Event()

    def observe(self, amount: float) -> None:
        self.values.append(amount)
        self.seen.set()

    async def next(self) -> float:
        self.seen.clear()
        await asyncio.wait_for(self.seen.wait(), 5)
        return self.values[-1]


async def test_probe_observes_how_late_the_loop_ran_it() -> None:
    samples = Samples()
    probe = asyncio.create_task(probe_lag(0.01, samples))
    try:
        for _ in range(3):
            assert 0.0 <= await samples.next() < 0.5  # a loaded CI machine stalls a bit
        await samples.next()  # the probe just went back to sleep for 10 ms
        time.sleep(0.05)  # noqa: ASYNC251 (the point: a callback that holds the loop)
        assert await samples.next() >= 0.035  # due 10 ms in, run about 50 ms in
    finally:
        probe.cancel()


async def test_default_series_is_the_daemons() -> None:
    """Without an observer the probe feeds `crmsync_event_loop_lag_seconds{tenant="_daemon"}`."""
    before = REGISTRY.get_sample_value(
        "crmsync_event_loop_lag_seconds_count", {"tenant": DAEMON_LABEL}) or 0.0
    probe = asyncio.create_task(probe_lag(0.001))
    await asyncio.sleep(0.1)  # about a hundred probes, at least a few on a busy machine
    probe.cancel()
    after = REGISTRY.get_sample_value(
        "crmsync_event_loop_lag_seconds_count", {"tenant": DAEMON_LABEL}) or 0.0
    assert after >= before + 2
