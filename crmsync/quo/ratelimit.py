"""One request limiter per Quo API key, exact over any sliding window.

Quo allows N requests per second per API key, shared by everything that uses the key.
`aiolimiter.AsyncLimiter(N, 1)` is a leaky bucket: it lets a full bucket of N through at
once and then N per second, so up to 2N requests can start within one sliding second.
This limiter instead keeps the start times of the last N grants and lets a request
start only once the oldest of them is at least `window` seconds old. That is exactly
"never more than N starts in any window", and under a backlog it grants a request the
moment a slot frees, so throughput is N / window.

`window` is one second plus a margin: the server counts arrivals, not our starts, and
network jitter between two requests can shift them closer together by up to that
margin.

Two lanes share the key: live work (webhook-driven writes, activity logging) is always
granted before queued backfill, so a live request waits behind at most the backfill
request being granted at that instant. A 429 pauses the whole key.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
from collections import deque
from collections.abc import Callable


class Lane(enum.IntEnum):
    """Priority of a request; lower value is served first."""

    LIVE = 0
    BACKFILL = 1


class SlidingWindowLimiter:
    """At most `rate` grants in any `window`-second interval, live lane first."""

    def __init__(
        self,
        rate: int,
        *,
        window: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self.rate = rate
        self.window = window
        self._clock = clock
        self._grants: deque[float] = deque(maxlen=rate)
        self._waiters: dict[Lane, deque[asyncio.Future[None]]] = {
            lane: deque() for lane in Lane
        }
        self._paused_until = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self.total_grants = 0
        self.total_wait_seconds = 0.0

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiters.values())

    def _next_free_at(self) -> float:
        """Earliest time a new grant keeps the window guarantee (and respects a pause)."""
        free_at = self._grants[0] + self.window if len(self._grants) == self.rate else 0.0
        return max(free_at, self._paused_until)

    def _next_waiter(self) -> asyncio.Future[None] | None:
        for lane in Lane:
            queue = self._waiters[lane]
            while queue and queue[0].done():  # cancelled while waiting
                queue.popleft()
            if queue:
                return queue.popleft()
        return None

    def _dispatch(self) -> None:
        """Grant as many waiters as the window allows now; arm a timer for the rest."""
        self._timer = None
        loop = asyncio.get_running_loop()
        while True:
            now = self._now()
            free_at = self._next_free_at()
            if free_at > now:
                if self.waiting:
                    self._timer = loop.call_at(
                        loop.time() + (free_at - now), self._dispatch
                    )
                return
            waiter = self._next_waiter()
            if waiter is None:
                return
            self._grants.append(now)
            self.total_grants += 1
            waiter.set_result(None)

    async def acquire(self, lane: Lane = Lane.BACKFILL) -> float:
        """Wait for a slot; return the seconds waited."""
        start = self._now()
        if not self.waiting and self._next_free_at() <= start:
            self._grants.append(start)
            self.total_grants += 1
            return 0.0
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[lane].append(waiter)
        if self._timer is None:
            self._dispatch()
        try:
            await waiter
        except asyncio.CancelledError:
            # A grant that raced with the cancellation stays counted: over-counting
            # only makes us slower, never over the limit.
            if not waiter.done():
                waiter.cancel()
            raise
        waited = self._now() - start
        self.total_wait_seconds += waited
        return waited

    def pause(self, seconds: float) -> None:
        """Hold every request on this key for `seconds` (after a 429)."""
        until = self._now() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.waiting:
                self._dispatch()

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._now())


def key_fingerprint(api_key: str) -> str:
    """A short stable label for an API key that does not reveal it (metrics, logs)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:8]


class LimiterRegistry:
    """One limiter per API key for the whole process, so tenants sharing a key share it."""

    def __init__(self, rate: int, *, window: float = 1.0) -> None:
        self.rate = rate
        self.window = window
        self._limiters: dict[str, SlidingWindowLimiter] = {}

    def for_key(self, api_key: str) -> SlidingWindowLimiter:
        fingerprint = key_fingerprint(api_key)
        limiter = self._limiters.get(fingerprint)
        if limiter is None:
            limiter = SlidingWindowLimiter(self.rate, window=self.window)
            self._limiters[fingerprint] = limiter
        return limiter

    def items(self) -> list[tuple[str, SlidingWindowLimiter]]:
        return list(self._limiters.items())
