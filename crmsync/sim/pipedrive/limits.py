"""Pipedrive's limits: a burst window per API token, search's own window, a daily budget.

- Burst: at most `burst_limit` requests per token in any rolling window (2 s); search
  routes count there too and also in their own window of `search_burst_limit`. Every
  answer to a known token carries `x-ratelimit-limit/-remaining/-reset` (seconds) of
  the window that applies; a 429 adds `Retry-After` (whole seconds).
- Daily budget: shared by every token of the company. Each admitted request costs
  tokens (v2 get 1, list 10, search 20; v1 get 2, list 20; writes 10; deletes 6); once
  the budget is spent every request gets a 429 with no rate-limit headers at all, until
  an admin resets it (`reset_budget`; the real budget resets at midnight).
- Measurements: per token, the most requests (admitted or not) seen in any window,
  exact because the maximum is always reached by a window ending at an arrival.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from crmsync.sim._kit.window import ArrivalWindow, RateWindow

COST_V2_GET, COST_V2_LIST, COST_SEARCH = 1, 10, 20
COST_V1_GET, COST_V1_LIST, COST_WRITE, COST_DELETE = 2, 20, 10, 6


def is_search(route: str) -> bool:
    return route.endswith("/search")


def token_cost(method: str, route: str) -> int:
    """What one request costs of the daily budget (flat, whatever its `limit`)."""
    if method == "DELETE":
        return COST_DELETE
    if method in ("POST", "PUT", "PATCH"):
        return COST_WRITE
    if is_search(route):
        return COST_SEARCH
    one = "{" in route or route.endswith("/users/me")
    if route.startswith("/api/v2/"):
        return COST_V2_GET if one else COST_V2_LIST
    return COST_V1_GET if one else COST_V1_LIST


@dataclass(frozen=True, slots=True)
class Verdict:
    """Admission of one request, and the headers that describe its window."""

    admitted: bool
    headers: dict[str, str]


@dataclass(slots=True)
class TokenWindows:
    general: RateWindow
    search: RateWindow
    observed: ArrivalWindow
    observed_search: ArrivalWindow
    max_in_any_window: int = 0
    max_search_in_any_window: int = 0


class BurstLimiter:
    """The rolling windows of every token."""

    def __init__(
        self,
        limit: int,
        search_limit: int,
        window: float,
        *,
        count_rejected: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.search_limit = search_limit
        self.window = window
        self.count_rejected = count_rejected
        self._clock = clock
        self.tokens: dict[str, TokenWindows] = {}

    def observe(self, token: str, *, search: bool) -> None:
        """Measure one request of `token`, whatever becomes of it (budget, faults, 429)."""
        now = self._clock()
        state = self._state(token)
        state.max_in_any_window = max(state.max_in_any_window, state.observed.record(now))
        if search:
            state.max_search_in_any_window = max(
                state.max_search_in_any_window, state.observed_search.record(now))

    def admit(self, token: str, *, search: bool, force_reject: bool = False) -> Verdict:
        """Whether the windows admit the request, and the headers describing them."""
        now = self._clock()
        state = self._state(token)
        # Search must pass both windows; the one that refuses is the one reported.
        windows = [state.search, state.general] if search else [state.general]
        admitted = True
        for window in windows:
            admitted = window.arrive(now, force_reject=force_reject or not admitted)
        refusing = [w for w in windows if w.seconds_until_admission(now) > 0]
        shown = refusing[0] if not admitted and refusing else windows[0]
        return Verdict(admitted, self._headers(shown, now, admitted=admitted))

    def arrive(self, token: str, *, search: bool, force_reject: bool = False) -> Verdict:
        """`observe` and `admit` in one."""
        self.observe(token, search=search)
        return self.admit(token, search=search, force_reject=force_reject)

    def _headers(self, window: RateWindow, now: float, *, admitted: bool) -> dict[str, str]:
        inside = window.counted.slide(now)
        if admitted:
            oldest_leaves = window.counted.seconds_until_fewer_than(1, now)
            reset = max(1, math.ceil(oldest_leaves))
            return {
                "x-ratelimit-limit": str(window.rate),
                "x-ratelimit-remaining": str(max(0, window.rate - inside)),
                "x-ratelimit-reset": str(reset),
            }
        wait = max(1, math.ceil(window.seconds_until_admission(now)))
        return {
            "x-ratelimit-limit": str(window.rate),
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": str(wait),
            "Retry-After": str(wait),
        }

    def _state(self, token: str) -> TokenWindows:
        state = self.tokens.get(token)
        if state is None:
            state = self.tokens[token] = TokenWindows(
                RateWindow(self.limit, self.window, count_rejected=self.count_rejected),
                RateWindow(self.search_limit, self.window, count_rejected=self.count_rejected),
                ArrivalWindow(self.window),
                ArrivalWindow(self.window),
            )
        return state

    def max_in_any_window(self) -> dict[str, int]:
        return {token: s.max_in_any_window for token, s in self.tokens.items()}

    def max_search_in_any_window(self) -> dict[str, int]:
        return {token: s.max_search_in_any_window for token, s in self.tokens.items()}

    def reset_stats(self) -> None:
        """Forget measurements; admission windows keep their history."""
        for state in self.tokens.values():
            state.observed.clear()
            state.observed_search.clear()
            state.max_in_any_window = state.max_search_in_any_window = 0


@dataclass(slots=True)
class DailyBudget:
    """The company's daily API tokens."""

    total: int
    used: int = 0

    @property
    def exhausted(self) -> bool:
        return self.used >= self.total

    def charge(self, cost: int) -> None:
        self.used += cost

    def reset(self, total: int | None = None) -> None:
        """A new day (or a new plan): nothing used."""
        self.used = 0
        if total is not None:
            self.total = total
