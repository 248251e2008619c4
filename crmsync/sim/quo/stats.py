"""`QuoSimStats`: what the simulator's gateway has seen, for tests, benchmarks and the demo.

Counts every `/v1` answer by (method, route template, status), the 429s among them
(rate limit and injected bursts alike), and exposes the gate's exact per-key
`max_in_any_window`. `QuoSim.snapshot()` adds data counts for `GET /_sim/stats`.
"""

from __future__ import annotations

from collections import Counter

from crmsync.sim.quo.ratelimit import SlidingWindowGate


class QuoSimStats:
    """Request counters of one simulator; `reset()` zeroes them (data stays)."""

    def __init__(self, gate: SlidingWindowGate) -> None:
        self._gate = gate
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.rate_limited = 0

    def record(self, method: str, route: str, status: int) -> None:
        self.requests[(method, route, status)] += 1
        if status == 429:
            self.rate_limited += 1

    @property
    def total_requests(self) -> int:
        """Every `/v1` request answered (401s and 429s included, dropped ones not)."""
        return sum(self.requests.values())

    @property
    def max_in_any_window(self) -> dict[str, int]:
        """Per key: most arrivals (admitted or not) seen in any sliding window."""
        return self._gate.max_in_any_window()

    def count(self, method: str, route: str, status: int | None = None) -> int:
        """Requests for a route template, e.g. `count("POST", "/v1/contacts", 201)`."""
        return sum(
            n for (m, r, s), n in self.requests.items()
            if m == method and r == route and (status is None or s == status)
        )

    def by_route(self) -> dict[str, dict[str, int]]:
        """`{"GET /v1/contacts": {"200": 3, "429": 1}, ...}`."""
        result: dict[str, dict[str, int]] = {}
        for (method, route, status), n in sorted(self.requests.items()):
            result.setdefault(f"{method} {route}", {})[str(status)] = n
        return result

    def reset(self) -> None:
        self.requests.clear()
        self.rate_limited = 0
        self._gate.reset_stats()
