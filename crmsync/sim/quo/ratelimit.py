"""The gateway's per-key rate limit over an exact sliding window, and its measurements.

Each key keeps two windows of arrival times (`time.monotonic()`, see `_kit.window`):

- the *limit* window decides admission: a request is rejected when the last
  `window` seconds already hold `rate` counted requests. With `count_rejected`
  (the default) rejected arrivals are counted too, like a strict gateway, so a
  client that ignores 429s stays locked out instead of getting every 11th request in.
- the *observed* window holds every arrival, admitted or not, and yields
  `max_in_any_window`: the largest number of arrivals in any sliding window so far.
  The maximum over all windows is always reached by a window ending at an arrival,
  so updating it on each arrival is exact.

Each key also keeps its first and last arrival time, so a benchmark can tell how long
the key was in use (`SlidingWindowGate.active_seconds`) and how much of its limit it used.

A window `(t - window, t]` excludes an arrival exactly `window` seconds old.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from crmsync.sim._kit.window import ArrivalWindow, RateWindow


@dataclass(slots=True)
class KeyWindow:
    """Arrival history of one API key."""

    counted: RateWindow
    observed: ArrivalWindow
    max_in_any_window: int = 0
    arrivals: int = 0
    rejected: int = 0
    #: clock time of the first and the last arrival (None before the first)
    first_arrival: float | None = None
    last_arrival: float | None = None



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
        state = self.keys.get(key)
        if state is None:
            state = self.keys[key] = KeyWindow(
                RateWindow(self.rate, self.window, count_rejected=self.count_rejected),
                ArrivalWindow(self.window),
            )
        state.arrivals += 1
        if state.first_arrival is None:
            state.first_arrival = now
        state.last_arrival = now
        state.max_in_any_window = max(state.max_in_any_window, state.observed.record(now))
        admitted = state.counted.arrive(now, force_reject=force_reject)
        if not admitted:
            state.rejected += 1
        return admitted

    def active_seconds(self, key: str) -> float:
        """How long `key` was in use: from its first arrival to one window after its last
        (the last window it occupied), 0 before its first. A key kept at its limit sends
        `rate` requests per such second, evenly or in bursts of `rate` alike (up to one
        window's worth short over the whole span)."""
        state = self.keys.get(key)
        if state is None or state.first_arrival is None or state.last_arrival is None:
            return 0.0
        return state.last_arrival - state.first_arrival + self.window

    def max_in_any_window(self) -> dict[str, int]:
        return {key: state.max_in_any_window for key, state in self.keys.items()}

    def reset_stats(self) -> None:
        """Forget measurements; the admission window keeps its history."""
        for state in self.keys.values():
            state.observed.clear()
            state.max_in_any_window = 0
            state.arrivals = 0
            state.rejected = 0
            state.first_arrival = state.last_arrival = None
