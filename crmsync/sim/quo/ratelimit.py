"""The gateway's per-key rate limit over an exact sliding window, and its measurements.

Each key keeps two deques of arrival times (`time.monotonic()`):

- the *limit* window decides admission: a request is rejected when the last
  `window` seconds already hold `rate` counted requests. With `count_rejected`
  (the default) rejected arrivals are counted too, like a strict gateway, so a
  client that ignores 429s stays locked out instead of getting every 11th request in.
- the *observed* window holds every arrival, admitted or not, and yields
  `max_in_any_window`: the largest number of arrivals in any sliding window so far.
  The maximum over all windows is always reached by a window ending at an arrival,
  so updating it on each arrival is exact.

A window `(t - window, t]` excludes an arrival exactly `window` seconds old.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(slots=True)
class KeyWindow:
    """Arrival history of one API key."""

    counted: deque[float] = field(default_factory=deque)
    observed: deque[float] = field(default_factory=deque)
    max_in_any_window: int = 0
    arrivals: int = 0
    rejected: int = 0


def _expire(arrivals: deque[float], horizon: float) -> None:
    while arrivals and arrivals[0] <= horizon:
        arrivals.popleft()


class SlidingWindowGate:
    """Admits at most `rate` requests per key in any `window`-second interval."""

    def __init__(
        self,
        rate: int,
        window: float = 1.0,
        *,
        count_rejected: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.window = window
        self.count_rejected = count_rejected
        self._clock = clock
        self.keys: dict[str, KeyWindow] = {}

    def arrive(self, key: str, *, force_reject: bool = False) -> bool:
        """Record an arrival for `key`; True if it is admitted.

        `force_reject` records a rejection decided elsewhere (an injected 429 burst).
        """
        now = self._clock()
        horizon = now - self.window
        state = self.keys.get(key)
        if state is None:
            state = self.keys[key] = KeyWindow()
        _expire(state.observed, horizon)
        state.observed.append(now)
        state.arrivals += 1
        state.max_in_any_window = max(state.max_in_any_window, len(state.observed))
        _expire(state.counted, horizon)
        admitted = not force_reject and len(state.counted) < self.rate
        if admitted or self.count_rejected:
            state.counted.append(now)
        if not admitted:
            state.rejected += 1
        return admitted

    def max_in_any_window(self) -> dict[str, int]:
        return {key: state.max_in_any_window for key, state in self.keys.items()}

    def reset_stats(self) -> None:
        """Forget measurements; the admission window keeps its history."""
        for state in self.keys.values():
            state.observed.clear()
            state.max_in_any_window = 0
            state.arrivals = 0
            state.rejected = 0
