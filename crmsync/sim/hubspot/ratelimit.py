"""HubSpot's limits per private-app token: a rolling 10-second window, search's own
per-second window, and a daily cap; plus what the limiter saw, for tests.

Search requests (`.../search`) count only against the search window (4 per second)
and the daily cap, and their answers carry no `X-HubSpot-RateLimit-*` headers; every
other request counts against the 10-second window. Whether a rejected request still
occupies a slot is `count_rejected` (HubSpot does not say; off by default). There is
no `Retry-After`: HubSpot's 429s have none, clients back off on their own.

`max_in_any_window` is exact: every arrival (admitted or not) enters an observation
window, and the fullest window always ends at an arrival.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from crmsync.sim._kit.window import ArrivalWindow, RateWindow

Policy = Literal["TEN_SECONDLY_ROLLING", "SECONDLY", "DAILY"]
TEN_SECONDS = 10.0


@dataclass(slots=True)
class TokenWindows:
    """The windows and measurements of one token."""

    burst: RateWindow
    search: RateWindow
    seen_burst: ArrivalWindow
    seen_search: ArrivalWindow
    max_burst: int = 0
    max_search: int = 0
    daily: int = 0


class RateLimiter:
    """Admits or rejects each request of a token, by its policy."""

    def __init__(
        self,
        per_ten_seconds: int,
        search_per_second: int,
        daily_limit: int,
        *,
        count_rejected: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_ten_seconds = per_ten_seconds
        self.search_per_second = search_per_second
        self.daily_limit = daily_limit
        self.count_rejected = count_rejected
        self.clock = clock
        self.tokens: dict[str, TokenWindows] = {}

    def admit(self, token: str, *, search: bool, force_reject: bool = False) -> Policy | None:
        """None when admitted, else the policy the request broke."""
        state = self._state(token)
        now = self.clock()
        if search:
            state.max_search = max(state.max_search, state.seen_search.record(now))
        else:
            state.max_burst = max(state.max_burst, state.seen_burst.record(now))
        if state.daily >= self.daily_limit and not force_reject:
            return "DAILY"
        window = state.search if search else state.burst
        if not window.arrive(now, force_reject=force_reject):
            return "SECONDLY" if search else "TEN_SECONDLY_ROLLING"
        state.daily += 1
        return None

    def headers(self, token: str) -> dict[str, str]:
        """The `X-HubSpot-RateLimit-*` headers of a non-search answer."""
        state = self._state(token)
        inside = state.burst.counted.slide(self.clock())
        return {
            "X-HubSpot-RateLimit-Max": str(self.per_ten_seconds),
            "X-HubSpot-RateLimit-Remaining": str(max(0, self.per_ten_seconds - inside)),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(TEN_SECONDS * 1000)),
            "X-HubSpot-RateLimit-Daily": str(self.daily_limit),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, self.daily_limit - state.daily)),
        }

    def daily_usage(self, token: str) -> int:
        return self._state(token).daily

    def max_in_any_window(self) -> dict[str, int]:
        """Per token: most non-search arrivals seen in any 10-second window."""
        return {token: state.max_burst for token, state in self.tokens.items()}

    def max_search_in_any_second(self) -> dict[str, int]:
        return {token: state.max_search for token, state in self.tokens.items()}

    def reset_stats(self) -> None:
        """Forget measurements; the admission windows and daily counts stay."""
        for state in self.tokens.values():
            state.seen_burst.clear()
            state.seen_search.clear()
            state.max_burst = state.max_search = 0

    def reset_daily(self) -> None:
        """Midnight in the portal's time zone: the daily counts start over."""
        for state in self.tokens.values():
            state.daily = 0

    def _state(self, token: str) -> TokenWindows:
        state = self.tokens.get(token)
        if state is None:
            state = self.tokens[token] = TokenWindows(
                RateWindow(self.per_ten_seconds, TEN_SECONDS,
                           count_rejected=self.count_rejected),
                RateWindow(self.search_per_second, 1.0, count_rejected=self.count_rejected),
                ArrivalWindow(TEN_SECONDS), ArrivalWindow(1.0),
            )
        return state
