"""Attio's rate limits: at most N reads and M writes per API key in any 1-second window.

A rejected request does not count against the window (nothing was processed, so the
client may retry it). `Retry-After` is an HTTP-date, as Attio sends: the first whole
second at which the window has room again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Literal

from crmsync.sim._kit.window import RateWindow

RequestKind = Literal["read", "write"]


class SlidingWindow(RateWindow):
    """Admission times of the last `rate` requests; exact over any `window` seconds.

    A rejection is not counted (see the module docstring); `try_admit` reports how long
    the client would have to wait instead.
    """

    __slots__ = ()

    def __init__(self, rate: int, window: float = 1.0) -> None:
        super().__init__(rate, window, count_rejected=False)

    def try_admit(self, now: float) -> float | None:
        """Admit (None) or return the seconds until a request would be admitted."""
        if self.arrive(now):
            return None
        return self.seconds_until_admission(now)


class RateLimiter:
    """One read window and one write window per API key."""

    def __init__(
        self,
        read_rate: int,
        write_rate: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._rates: dict[RequestKind, int] = {"read": read_rate, "write": write_rate}
        self._windows: dict[tuple[str, RequestKind], SlidingWindow] = {}
        self._clock = clock
        self.wall_clock = wall_clock

    def check(self, api_key: str, kind: RequestKind) -> str | None:
        """None when admitted, else the `Retry-After` HTTP-date."""
        window = self._windows.get((api_key, kind))
        if window is None:
            window = self._windows[(api_key, kind)] = SlidingWindow(self._rates[kind])
        wait = window.try_admit(self._clock())
        if wait is None:
            return None
        return retry_after_date(self.wall_clock() + wait)


def retry_after_date(moment: float) -> str:
    """HTTP-date of the first whole second not before `moment`."""
    return formatdate(math.ceil(moment), usegmt=True)


def next_second_date(now: float) -> str:
    """HTTP-date of the next whole second after `now` (for forced 429s)."""
    return formatdate(math.floor(now) + 1, usegmt=True)


def request_kind(method: str, path: str) -> RequestKind:
    """Attio counts GETs and record queries as reads; every other call is a write."""
    if method in ("GET", "HEAD") or path.endswith("/records/query"):
        return "read"
    return "write"
