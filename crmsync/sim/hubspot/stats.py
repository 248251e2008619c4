"""`HubSpotSimStats`: what the simulator's gateway has seen, for tests and benchmarks.

The shared counters of `_kit.stats` (every API answer by method, route template and
status; the 429s among them, rate limits and injected bursts alike; the limiter's
exact per-token maximum in any 10-second window), plus injected failures and the
search maxima per second. `reset()` zeroes them; the data and admission windows stay.
"""

from __future__ import annotations

from crmsync.sim._kit.stats import RequestStats
from crmsync.sim.hubspot.ratelimit import RateLimiter


class HubSpotSimStats(RequestStats[RateLimiter]):
    """Request counters of one simulator."""

    def __init__(self, limiter: RateLimiter) -> None:
        super().__init__(limiter)
        self.injected_failures = 0

    @property
    def max_search_in_any_second(self) -> dict[str, int]:
        return self._limiter.max_search_in_any_second()

    def reset(self) -> None:
        super().reset()
        self.injected_failures = 0
