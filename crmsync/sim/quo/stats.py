"""`QuoSimStats`: what the simulator's gateway has seen, for tests, benchmarks and the demo.

The shared counters of `_kit.stats`: every `/v1` answer by (method, route template,
status), the 429s among them (rate limit and injected bursts alike), and the gate's
exact per-key `max_in_any_window`. `QuoSim.snapshot()` adds data counts for
`GET /_sim/stats`.
"""

from __future__ import annotations

from crmsync.sim._kit.stats import RequestStats
from crmsync.sim.quo.ratelimit import SlidingWindowGate


class QuoSimStats(RequestStats[SlidingWindowGate]):
    """Request counters of one simulator; `reset()` zeroes them (data stays)."""
