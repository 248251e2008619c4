"""`PipedriveStats`: what the simulator's gateway has seen, for tests, benchmarks, the demo.

The shared counters of `_kit.stats` (every API answer by method, route template and
status; the 429s among them, burst, budget and injected alike; the limiter's exact
per-token `max_in_any_window`), plus budget refusals on their own, injected failures
and the search window's maxima.
"""

from __future__ import annotations

from crmsync.sim._kit.stats import RequestStats
from crmsync.sim.pipedrive.limits import BurstLimiter


class PipedriveStats(RequestStats[BurstLimiter]):
    """Request counters of one simulator; `reset()` zeroes them (data stays)."""

    def __init__(self, limiter: BurstLimiter) -> None:
        super().__init__(limiter)
        self.budget_refused = 0
        self.injected_failures = 0

    @property
    def max_search_in_any_window(self) -> dict[str, int]:
        return self._limiter.max_search_in_any_window()

    def reset(self) -> None:
        super().reset()
        self.budget_refused = self.injected_failures = 0
