"""Request counters of a simulator's gateway, for tests, benchmarks and the demo.

`RequestStats` counts every API answer by (method, route template, status) and the
429s among them, and exposes the limiter's exact per-key `max_in_any_window` (most
arrivals, admitted or not, seen in any window). `reset()` zeroes the counters and the
limiter's measurements; the data and the admission windows stay. Each provider's
subclass adds its own counters (injected failures, budget refusals, search maxima).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Generic, Protocol, TypeVar


class MeasuredLimiter(Protocol):
    """The part of a simulator's rate limiter the counters read."""

    def max_in_any_window(self) -> dict[str, int]: ...

    def reset_stats(self) -> None: ...


L = TypeVar("L", bound=MeasuredLimiter)


class RequestStats(Generic[L]):
    """Request counters of one simulator; `reset()` zeroes them (data stays)."""

    def __init__(self, limiter: L) -> None:
        self._limiter = limiter
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.rate_limited = 0

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
        """Per key: most arrivals (admitted or not) seen in any rolling window."""
        return self._limiter.max_in_any_window()

    def count(self, method: str, route: str, status: int | None = None) -> int:
        """Answers for a route template, e.g. `count("GET", "/v1/contacts", 200)`."""
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

    def summary(self) -> dict[str, Any]:
        """The counters `GET /_sim/stats` starts with."""
        return {
            "requests": self.by_route(),
            "total_requests": self.total_requests,
            "rate_limited": self.rate_limited,
        }

    def reset(self) -> None:
        self.requests.clear()
        self.rate_limited = 0
        self._limiter.reset_stats()
