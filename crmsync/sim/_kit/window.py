"""The exact sliding window of arrival times behind both simulators' rate limits.

A window ending at `now` is the half-open interval `(now - window, now]`: an arrival
exactly `window` seconds old has left it. Times are whatever clock the caller passes
(`time.monotonic()` in the simulators, a fake clock in tests).

- `ArrivalWindow` keeps the arrival times still inside the window, nothing more;
  `record` is how a limiter measures the most arrivals seen in any window.
- `RateWindow` admits at most `rate` counted arrivals per window. Whether a rejected
  arrival is counted is the one policy difference between the simulated gateways: a
  strict gateway counts it (a client that ignores 429s stays locked out), an API that
  processed nothing does not (the client may simply retry).
"""

from __future__ import annotations

from collections import deque


class ArrivalWindow:
    """Arrival times inside the window `(now - window, now]`, oldest first."""

    __slots__ = ("_times", "window")

    def __init__(self, window: float = 1.0) -> None:
        self.window = window
        self._times: deque[float] = deque()

    def slide(self, now: float) -> int:
        """Move the window to end at `now`; the number of arrivals left inside it."""
        horizon = now - self.window
        times = self._times
        while times and times[0] <= horizon:
            times.popleft()
        return len(times)

    def add(self, now: float) -> None:
        """Record an arrival at `now` (not before the last one recorded)."""
        self._times.append(now)

    def record(self, now: float) -> int:
        """Slide to `now` and add an arrival there; the arrivals now inside, it included."""
        self.slide(now)
        self._times.append(now)
        return len(self._times)

    def clear(self) -> None:
        self._times.clear()

    def __len__(self) -> int:
        return len(self._times)

    def seconds_until_fewer_than(self, count: int, now: float) -> float:
        """Once slid to `now`: how long until fewer than `count` arrivals are inside.

        Zero when there already are. Otherwise the wait ends when the arrival that
        brings the number below `count` leaves the window, `window` seconds after it came.
        """
        excess = len(self._times) - count
        if excess < 0:
            return 0.0
        return self._times[excess] + self.window - now


class RateWindow:
    """Admits at most `rate` counted arrivals in any window of `window` seconds."""

    __slots__ = ("count_rejected", "counted", "rate")

    def __init__(self, rate: int, window: float = 1.0, *, count_rejected: bool) -> None:
        self.rate = rate
        self.count_rejected = count_rejected
        self.counted = ArrivalWindow(window)

    @property
    def window(self) -> float:
        return self.counted.window

    def arrive(self, now: float, *, force_reject: bool = False) -> bool:
        """Record an arrival at `now`; True if it is admitted.

        `force_reject` records a rejection decided elsewhere (an injected 429), which
        occupies a slot like any other rejection when rejections are counted.
        """
        inside = self.counted.slide(now)
        admitted = not force_reject and inside < self.rate
        if admitted or self.count_rejected:
            self.counted.add(now)
        return admitted

    def seconds_until_admission(self, now: float) -> float:
        """After `arrive(now)`: how long until an arrival would be admitted (0: now)."""
        return self.counted.seconds_until_fewer_than(self.rate, now)
