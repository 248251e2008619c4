"""`HubSpotSimStats`: what the simulator's gateway has seen, for tests and benchmarks.

Counts every API answer by (method, route template, status), the 429s among them (rate
limits and injected bursts alike) and injected failures, and exposes the limiter's
exact per-token maxima. `reset()` zeroes them; the data and admission windows stay.
"""

from __future__ import annotations

from collections import Counter

from crmsync.sim.hubspot.ratelimit import RateLimiter


class HubSpotSimStats:
    """Request counters of one simulator."""

    def __init__(self, limiter: RateLimiter) -> None:
        self._limiter = limiter
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.rate_limited = 0
        self.injected_failures = 0

    def record(self, method: str, route: str, status: int) -> None:
        self.requests[(method, route, status)] += 1
        if status == 429:
            self.rate_limited += 1

    @property
    def total_requests(self) -> int:
        """Every API request answered (401s and 429s included, dropped ones not)."""
        return sum(self.requests.values())

    @property
    def max_in_any_window(self) -> dict[str, int]:
        """Per token: most non-search requests in any rolling 10-second window."""
        return self._limiter.max_in_any_window()

    @property
    def max_search_in_any_second(self) -> dict[str, int]:
        return self._limiter.max_search_in_any_second()

    def count(self, method: str, route: str, status: int | None = None) -> int:
        """Answers for a route template, e.g. `count("GET", "/crm/v3/objects/contacts")`."""
        return sum(
            n for (m, r, s), n in self.requests.items()
            if m == method and r == route and (status is None or s == status)
        )

    def by_route(self) -> dict[str, dict[str, int]]:
        """`{"GET /crm/v3/objects/contacts": {"200": 3, "429": 1}, ...}`."""
        result: dict[str, dict[str, int]] = {}
        for (method, route, status), n in sorted(self.requests.items()):
            result.setdefault(f"{method} {route}", {})[str(status)] = n
        return result

    def reset(self) -> None:
        self.requests.clear()
        self.rate_limited = 0
        self.injected_failures = 0
        self._limiter.reset_stats()
