"""One request limiter per API key, exact over any sliding window (Quo's and every CRM's).

Quo allows N requests per second per API key, shared by everything that uses the key.
`aiolimiter.AsyncLimiter(N, 1)` is a leaky bucket: it lets a full bucket of N through at
once and then N per second, so up to 2N requests can start within one sliding second.

The server counts *arrivals*, and a request granted at t may leave the process later
(connection setup, a busy loop) and reach the server's clock later still (network
jitter, the server's own stalls), so a guarantee on grant times alone is not one.
Each grant is a `Slot` that occupies the window from a basis time until `window`
seconds later, and a new request is granted only while fewer than N slots are in
flight or inside their window:

- basis "response" (default): the moment the request's response came back. The
  server saw the request before answering it, and the next request reaches it after
  we send it, so N + 1 arrivals can never fall within one `window`, whatever the
  delays. The price: each slot cycles in `window` + one round-trip.
- basis "send": the moment its headers were written (an aiohttp trace hook, see
  `slot_trace_config`). Faster (a slot cycles in `window`), and exact on our side;
  on the server's side safe only while arrival jitter stays under the margin.

`window` is one second plus a margin. Under a backlog the next request is granted the
moment a slot expires.

Two lanes share the key: live work (webhook-driven writes, activity logging) is always
granted before queued backfill, so a live request waits behind at most the backfill
request being granted at that instant. A 429 pauses the whole key.

A process cannot see what another process sent with the same key in the last window
(its predecessor killed a moment ago, or `crmsync sync` just before). Where the limit
is a promise (Quo's), `Limits(warm=True)` makes the limiter start *warm*: it holds its
first request for one window after first use, at most one window per key per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
from collections import deque
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Literal, NamedTuple

import aiohttp

Basis = Literal["response", "send"]


class Lane(enum.IntEnum):
    """Priority of a request; lower value is served first."""

    LIVE = 0
    BACKFILL = 1


class Slot:
    """One granted request; `sent()` starts its window, `done()` ends its flight."""

    __slots__ = ("_limiter", "sent_at", "waited")

    def __init__(self, limiter: SlidingWindowLimiter, waited: float) -> None:
        self._limiter = limiter
        self.sent_at: float | None = None
        self.waited = waited

    def sent(self) -> None:
        """The request's headers left (called by the trace hook)."""
        if self._limiter.basis == "send":
            self._start_window()

    def done(self) -> None:
        """The response came back (or the request failed): the window starts now at
        the latest."""
        self._start_window()

    def _start_window(self) -> None:
        if self.sent_at is None:
            self.sent_at = self._limiter.now()
            self._limiter.wake()


class SlidingWindowLimiter:
    """At most `rate` sends in any `window`-second interval, live lane first."""

    def __init__(
        self, rate: int, *, window: float = 1.0, basis: Basis = "response", warm: bool = False
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        self.rate = rate
        self.window = window
        self.basis = basis
        self._slots: deque[Slot] = deque()
        self._waiters: dict[Lane, deque[asyncio.Future[Slot]]] = {
            lane: deque() for lane in Lane
        }
        self._paused_until = 0.0
        #: hold the first request one window: the key may have been busy before us
        self._cold = warm
        self._timer: asyncio.TimerHandle | None = None
        self.total_grants = 0
        self.total_wait_seconds = 0.0

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiters.values())

    @property
    def in_flight(self) -> int:
        """Granted requests whose answer has not come back (nor failed) yet."""
        return sum(1 for slot in self._slots if slot.sent_at is None)

    def occupied(self) -> int:
        """Slots in flight or still inside their window: what the next grant waits on."""
        now = self.now()
        return sum(
            1 for slot in self._slots if slot.sent_at is None or slot.sent_at + self.window > now
        )

    def _next_free_at(self, now: float) -> float | None:
        """Earliest time a grant keeps the guarantee; None until a send is reported."""
        while self._slots and (sent := self._slots[0].sent_at) is not None \
                and sent + self.window <= now:
            self._slots.popleft()
        free_at = now
        if len(self._slots) >= self.rate:
            # Slots are kept in grant order; count those still occupying the window.
            live = [s.sent_at for s in self._slots]
            occupied = [t for t in live if t is None or t + self.window > now]
            if len(occupied) >= self.rate:
                expiring = sorted(t for t in occupied if t is not None)
                need = len(occupied) - self.rate + 1
                if len(expiring) < need:
                    return None  # in-flight requests must report their send first
                free_at = expiring[need - 1] + self.window
        return max(free_at, self._paused_until)

    def _next_waiter(self) -> asyncio.Future[Slot] | None:
        for lane in Lane:
            queue = self._waiters[lane]
            while queue and queue[0].done():  # cancelled while waiting
                queue.popleft()
            if queue:
                return queue.popleft()
        return None

    def wake(self) -> None:
        """Re-check the waiters (a send was reported or a pause changed)."""
        if self.waiting and self._timer is None:
            self._dispatch()

    def _dispatch(self) -> None:
        """Grant as many waiters as the window allows now; arm a timer for the rest."""
        self._timer = None
        loop = asyncio.get_running_loop()
        while self.waiting:
            now = loop.time()
            free_at = self._next_free_at(now)
            if free_at is None:
                return  # Slot.sent() calls wake()
            if free_at > now:
                self._timer = loop.call_at(free_at, self._dispatch)
                return
            waiter = self._next_waiter()
            if waiter is None:
                return
            slot = Slot(self, 0.0)
            self._slots.append(slot)
            waiter.set_result(slot)

    async def acquire(self, lane: Lane = Lane.BACKFILL) -> Slot:
        """Wait for a slot. Call `slot.sent()` when the request leaves, `done()` after."""
        start = self.now()
        if self._cold:
            self._cold = False
            self._paused_until = max(self._paused_until, start + self.window)
        if not self.waiting and self._next_free_at(start) == start:
            slot = Slot(self, 0.0)
            self._slots.append(slot)
            self.total_grants += 1
            return slot
        waiter: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        self._waiters[lane].append(waiter)
        if self._timer is None:
            self._dispatch()
        try:
            slot = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Granted just as we were cancelled: give the slot a send time so it
                # expires instead of blocking the key forever.
                waiter.result().done()
            else:
                waiter.cancel()
                # Gone from the queue now, not at the next grant: a key that is paused
                # or idle must not collect cancelled waiters.
                with contextlib.suppress(ValueError):
                    self._waiters[lane].remove(waiter)
            raise
        waited = self.now() - start
        slot.waited = waited
        self.total_grants += 1
        self.total_wait_seconds += waited
        return slot

    def pause(self, seconds: float) -> None:
        """Hold every request on this key for `seconds` (after a 429)."""
        until = self.now() + max(0.0, seconds)
        if until > self._paused_until:
            self._paused_until = until
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.wake()

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self.now())


async def _on_headers_sent(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
) -> None:
    slot = getattr(context, "trace_request_ctx", None)
    if isinstance(slot, Slot):
        slot.sent()


def slot_trace_config() -> aiohttp.TraceConfig:
    """Attach to the ClientSession so a `Slot` passed as `trace_request_ctx` learns
    the moment its request's headers were written to the socket."""
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_on_headers_sent)
    return config


def key_fingerprint(api_key: str) -> str:
    """A short stable label for an API key that does not reveal it (metrics, logs)."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class Limits:
    """An API's request budget per key: `rate` per `window` for every request, or for
    reads only when `write_rate` gives writes a budget of their own (Attio: 100 reads
    and 25 writes per second)."""

    rate: int
    write_rate: int | None = None
    window: float = 1.0
    basis: Basis = "response"
    #: hold the first request one window: another process may have used the key
    warm: bool = False


class Limiters(NamedTuple):
    """The limiters one account's calls wait for (the same one twice when shared)."""

    read: SlidingWindowLimiter
    write: SlidingWindowLimiter

    @classmethod
    def shared(cls, limiter: SlidingWindowLimiter) -> Limiters:
        return cls(limiter, limiter)


class LimiterRegistry:
    """One limiter per API, key and kind for the whole process: every tenant and actor
    using a key shares it. The first `Limits` asked for a key are the ones it keeps."""

    def __init__(self) -> None:
        self._limiters: dict[str, SlidingWindowLimiter] = {}

    def _get(self, label: str, rate: int, limits: Limits) -> SlidingWindowLimiter:
        limiter = self._limiters.get(label)
        if limiter is None:
            limiter = self._limiters[label] = SlidingWindowLimiter(
                rate, window=limits.window, basis=limits.basis, warm=limits.warm
            )
        return limiter

    def for_account(self, api: str, api_key: str, limits: Limits) -> Limiters:
        """The limiters of `api_key` at `api`; labels show a fingerprint, never the key."""
        label = f"{api}:{key_fingerprint(api_key)}"
        if limits.write_rate is None:
            return Limiters.shared(self._get(label, limits.rate, limits))
        return Limiters(
            self._get(f"{label}:read", limits.rate, limits),
            self._get(f"{label}:write", limits.write_rate, limits),
        )

    def items(self) -> list[tuple[str, SlidingWindowLimiter]]:
        return list(self._limiters.items())
