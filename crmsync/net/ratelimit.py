"""One request limiter per API key, exact over any sliding window (Quo's and every CRM's).

Quo allows N requests per second per API key, shared by everything that uses the key.
`aiolimiter.AsyncLimiter(N, 1)` is a leaky bucket: it lets a full bucket of N through at
once and then N per second, so up to 2N requests can start within one sliding second.

The server counts *arrivals*, and a request granted at t may leave the process later
(connection setup, a busy loop) and reach the server's clock later still (network
jitter, the server's own stalls), so a guarantee on grant times alone is not one.
Each grant is a `Slot` that occupies the window from a basis time T until `window`
seconds later (`window` is one second plus a margin m), and a new request is granted
only while fewer than N slots are in flight or inside their window. Under a backlog
the next request is granted the moment a slot expires. The bases, for a request sent
at S (its first bytes were handed to the socket: aiohttp trace hooks, see
`slot_trace_config`) and answered at R (its answer's headers came back):

- "response": T = when the request finished. The server saw the request before
  answering it, and the next request reaches it after we send it, so N + 1 arrivals
  can never fall within one `window`, whatever the delays. The price: each slot
  cycles in `window` + one round trip.
- "send": T = S. Faster (a slot cycles in `window`), and exact on our side; on the
  server's side safe only while the one-way delay varies by less than m.
- "adaptive" (Quo's default): T = R - F + E, where F is the fastest round trip of the
  key in the last `FLOOR_HORIZON` windows and E an extra margin that only a 429 sets.

Why "adaptive" is safe. Split a request's round trip R - S into its way out o (until
the server counts it) and its way back b (the server's work included): it arrived at
A = S + o = R - b. A request j is granted, and so sent, only after the N-th most recent
slot i has expired: S_j >= R_i - F + 1 + m. Hence
A_j - A_i = S_j + o_j - R_i + b_i >= 1 + m + o_j + b_i - F, which is at least one
second as long as o_j + b_i >= F - m: no request's way out plus another's way back is
more than the margin faster than the floor F. Among any N + 1
requests the last one granted found at most N - 1 others occupying the key, so one of
them arrived a second or more before it: no sliding second at the server holds
N + 1 arrivals (its window (t - 1, t] cannot hold both). Delays may vary by any
amount above that floor: each slot is charged its own excess round trip R_i - S_i - F,
so a slow answer (the request may have arrived late) holds its slot longer, a fast one
frees it almost as early as the send basis would. Round trips are only ever longer
than their floor, so this needs no percentile and no jitter bound, and it charges a
slot the *mean* excess where a margin sized to the spread would charge every slot the
worst case. A request that got no answer (cancelled, timed out, connection lost)
counts as answered at the later of its end and one slowest recent round trip after
its send.

F must be the floor of the *way*, not of a spell in which every request was slowed
alike: a server that stalled (or queued) every request of a burst makes all their
round trips long, and a floor learnt from them alone credits the next, fast, request
with a way back it never had (a simulator stalled 150 ms under load took 174 requests
in one second at 100/s so). Hence F is the fastest over a long horizon, and counts as
0 (the response basis) until at least `MIN_RTT_SAMPLES` answers have come over at
least `MIN_FLOOR_SPAN` windows. Both are in windows, so they scale with the limit's.

If the assumption breaks (a faster route, Quo counting differently) the server
answers 429: the transport pauses the key, and the limiter (told by the slot whose
answer it was) widens E at once to the spread of recent round trips (at least
`MIN_WIDENING`), doubling on each further 429 (at most once per window, up to
`MAX_EXTRA_MARGIN`); E then halves every `half_life` seconds.

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
import heapq
import math
import operator
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Final, Literal, NamedTuple

import aiohttp

Basis = Literal["adaptive", "response", "send"]

#: round trips the adaptive basis keeps for their spread (how far a 429 widens E) and
#: their slowest (how long a request without an answer holds its slot)
RTT_SAMPLES: Final = 200
#: below this many round trips the adaptive basis counts like "response" (F = 0): the
#: fastest of a handful may still carry jitter, the fastest of 20 hardly any
MIN_RTT_SAMPLES: Final = 20
#: ... and until answers have come over this many windows (a first burst can be
#: delayed alike, a server stalled as the key started)
MIN_FLOOR_SPAN: Final = 5
#: F is the fastest round trip answered in this many windows (10 minutes for Quo's):
#: long, so that a spell of slow answers does not lift it, short enough to follow a way
#: that became slower, in steps of `FLOOR_BUCKET` windows (bounded memory)
FLOOR_HORIZON: Final = 600
FLOOR_BUCKET: Final = 10
#: the widest extra margin repeated 429s can set
MAX_EXTRA_MARGIN: Final = 0.5
#: the first widening is at least this much, even when round trips do not vary
MIN_WIDENING: Final = 0.01
#: seconds for the extra margin to halve once the 429s stop
EXTRA_MARGIN_HALF_LIFE: Final = 300.0

HTTP_TOO_MANY_REQUESTS: Final = 429


class Lane(enum.IntEnum):
    """Priority of a request; lower value is served first."""

    LIVE = 0
    BACKFILL = 1


class Slot:
    """One granted request: `sent()` when its headers leave, `answered(status)` when its
    answer's headers come back, `done()` when it is over (also after a failure)."""

    __slots__ = ("_body_pending", "_limiter", "answered_at", "sent_at", "waited", "window_start")

    def __init__(self, limiter: SlidingWindowLimiter, waited: float) -> None:
        self._limiter = limiter
        #: the headers wait for the body: the send is stamped when its first chunk leaves
        self._body_pending = False
        self.sent_at: float | None = None
        self.answered_at: float | None = None
        #: when this slot's `window` starts; None while the request is in flight
        self.window_start: float | None = None
        self.waited = waited

    def sent(self, *, body_follows: bool = False) -> None:
        """The request's headers are ready (called by the trace hook). Without a body
        they leave now; with one they leave with its first chunk (`body_sent`)."""
        if body_follows:
            self._body_pending = True
        elif not self._body_pending:
            self._stamp_send()

    def body_sent(self) -> None:
        """The body's first chunk, and the headers with it, leave now (trace hook).

        aiohttp buffers a body request's headers and writes them with the body, and
        before Python 3.12 that happens in a task of its own: a pass of the loop after
        the headers hook, which on a busy loop is tens to hundreds of milliseconds.
        Stamped at the hook, such a request looked sent before it was: its round trip
        too long, hence a floor F too high (adaptive), or a window started too early
        (send). A stamp that is late instead only errs on the safe side for both."""
        self._stamp_send()

    def _stamp_send(self) -> None:
        if self.sent_at is not None:
            return  # aiohttp re-sent it: the first send counts
        self.sent_at = self._limiter.now()
        if self._limiter.basis == "send":
            self._start_window(self.sent_at)

    def answered(self, status: int) -> None:
        """The answer's headers came back (called by the transport)."""
        if self.answered_at is not None:
            return
        limiter = self._limiter
        self.answered_at = limiter.now()
        if status == HTTP_TOO_MANY_REQUESTS:
            limiter.rate_limited()
        if limiter.basis == "adaptive" and self.window_start is None:
            self._start_window(limiter.answered_window_start(self.sent_at, self.answered_at))

    def done(self) -> None:
        """The request is over (answered, failed or cancelled): the window starts now
        at the latest, or, for the adaptive basis, as `answered` would have started it."""
        if self.window_start is not None:
            return
        limiter = self._limiter
        now = limiter.now()
        if limiter.basis == "adaptive":
            self._start_window(limiter.unanswered_window_start(self.sent_at, now))
        else:
            self._start_window(now)

    def _start_window(self, start: float) -> None:
        if self.window_start is None:
            self.window_start = start
            self._limiter.window_started(start)


class SlidingWindowLimiter:
    """At most `rate` sends in any `window`-second interval, live lane first.

    Every grant and every answer is O(log rate) at most: the limiter counts the slots in
    flight, keeps the ends of the started windows in a heap (they start out of grant
    order: each slot's margin differs), and the fastest and slowest of the recent round
    trips in monotonic queues. (It used to rescan and sort its slots on every grant and
    its 200 round trips on every answer; with 200 tenants that was a share of the loop.)
    """

    def __init__(
        self,
        rate: int,
        *,
        window: float = 1.0,
        basis: Basis = "response",
        warm: bool = False,
        half_life: float = EXTRA_MARGIN_HALF_LIFE,
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1")
        if window <= 0:
            raise ValueError("window must be positive")
        if half_life <= 0:
            raise ValueError("half_life must be positive")
        self.rate = rate
        self.window = window
        self.basis = basis
        self.half_life = half_life
        #: granted slots whose window has not started yet
        self._in_flight = 0
        #: when each started window ends (a min-heap; ended ones are dropped lazily)
        self._window_ends: list[float] = []
        self._waiters: dict[Lane, deque[asyncio.Future[Slot]]] = {
            lane: deque() for lane in Lane
        }
        self._paused_until = 0.0
        #: hold the first request one window: the key may have been busy before us
        self._cold = warm
        self._timer: asyncio.TimerHandle | None = None
        #: the adaptive basis: how many round trips were seen, and the fastest and the
        #: slowest of the last `RTT_SAMPLES` as monotonic queues of (sample number,
        #: seconds): the head is the minimum (maximum) of the window
        self._rtt_count = 0
        self._rtt_lows: deque[tuple[int, float]] = deque()
        self._rtt_highs: deque[tuple[int, float]] = deque()
        #: the floor's horizon: the fastest round trip per bucket of `FLOOR_BUCKET`
        #: windows, as (bucket number, seconds), and their minimum; when the first and
        #: the latest answer came
        self._floor_buckets: deque[tuple[int, float]] = deque()
        self._floor = 0.0
        self._first_answer: float | None = None
        self._last_answer = 0.0
        #: the extra margin E as last set, when it was set, and the last widening
        self._extra = 0.0
        self._extra_set_at = 0.0
        #: False when this process may no longer use the key (a replica whose lease on
        #: it may have ended: `daemon/leases.py`); checked before and after every wait
        self.guard: Callable[[], bool] | None = None
        self._last_widened: float | None = None
        self.total_grants = 0
        self.total_wait_seconds = 0.0
        self.total_rate_limited = 0

    @staticmethod
    def now() -> float:
        return asyncio.get_running_loop().time()

    @property
    def waiting(self) -> int:
        waiters = self._waiters
        return len(waiters[Lane.LIVE]) + len(waiters[Lane.BACKFILL])

    @property
    def in_flight(self) -> int:
        """Granted requests whose window has not started (no answer, no failure yet)."""
        return self._in_flight

    def occupied(self) -> int:
        """Slots in flight or still inside their window: what the next grant waits on."""
        now = self.now()
        return self._in_flight + sum(1 for end in self._window_ends if end > now)

    def window_started(self, start: float) -> None:
        """A slot's window starts at `start` (called once per slot by `Slot`)."""
        self._in_flight -= 1
        heapq.heappush(self._window_ends, start + self.window)
        self.wake()

    # -- the adaptive basis -----------------------------------------------------------

    def _record_rtt(self, seconds: float, answered_at: float) -> None:
        """One more round trip, answered at `answered_at`; the one `RTT_SAMPLES` back
        leaves the recent ones, buckets older than `FLOOR_HORIZON` leave the floor's."""
        self._record_floor(seconds, answered_at)
        number = self._rtt_count
        self._rtt_count += 1
        oldest = number - RTT_SAMPLES  # this sample number and older have left
        for queue, keeps in ((self._rtt_lows, operator.lt), (self._rtt_highs, operator.gt)):
            while queue and not keeps(queue[-1][1], seconds):
                queue.pop()  # never the extreme again while `seconds` is in the window
            queue.append((number, seconds))
            if queue[0][0] <= oldest:
                queue.popleft()

    def _record_floor(self, seconds: float, answered_at: float) -> None:
        if self._first_answer is None:
            self._first_answer = answered_at
        self._last_answer = max(self._last_answer, answered_at)
        buckets = self._floor_buckets
        bucket = int(self._last_answer // (FLOOR_BUCKET * self.window))
        if buckets and buckets[-1][0] == bucket:
            if seconds < buckets[-1][1]:
                buckets[-1] = (bucket, seconds)
                self._floor = min(self._floor, seconds)
            return
        buckets.append((bucket, seconds))
        oldest_kept = bucket - FLOOR_HORIZON // FLOOR_BUCKET + 1
        while buckets[0][0] < oldest_kept:
            buckets.popleft()
        self._floor = min(fastest for _, fastest in buckets)

    def rtt_floor(self) -> float:
        """F: the fastest round trip of the horizon; 0 until `MIN_RTT_SAMPLES` answers
        have come over `MIN_FLOOR_SPAN` windows."""
        first = self._first_answer
        if (
            self._rtt_count < MIN_RTT_SAMPLES
            or first is None
            or self._last_answer - first < MIN_FLOOR_SPAN * self.window
        ):
            return 0.0
        return self._floor

    def _rtt_ceiling(self) -> float:
        """The slowest recent round trip (call only once there is one)."""
        return self._rtt_highs[0][1]

    def rtt_spread(self) -> float:
        """Slowest minus fastest recent round trip (0 without samples)."""
        if not self._rtt_count:
            return 0.0
        return self._rtt_ceiling() - self._rtt_lows[0][1]

    def extra_margin(self, now: float | None = None) -> float:
        """E: the margin 429s added, halving every `half_life` seconds since."""
        if not self._extra:
            return 0.0
        at = self.now() if now is None else now
        halvings = max(0.0, at - self._extra_set_at) / self.half_life
        return self._extra * math.pow(0.5, halvings)

    def margin_of(self, round_trip: float, now: float | None = None) -> float:
        """Seconds a slot with this round trip holds the key beyond `window` after its
        send (adaptive basis): its excess over the floor plus E."""
        floor = min(self.rtt_floor(), round_trip)
        return round_trip - floor + self.extra_margin(now)

    def answered_window_start(self, sent_at: float | None, answered_at: float) -> float:
        """T = R - F + E for an answer at `answered_at`; records the round trip."""
        if sent_at is None:  # no trace hook on the session: all we know is the answer
            return answered_at + self.extra_margin(answered_at)
        self._record_rtt(answered_at - sent_at, answered_at)
        # F <= this round trip (it is one of the samples once enough are known), so the
        # window never starts before the send: never looser than the send basis.
        return sent_at + self.margin_of(answered_at - sent_at, answered_at)

    def unanswered_window_start(self, sent_at: float | None, ended_at: float) -> float:
        """T for a request that got no answer: as if answered at the later of its end
        and one slowest recent round trip after its send. Without a reported send (it
        never left, or the session lacks the trace hook) it counts from its end, as
        the response basis does."""
        extra = self.extra_margin(ended_at)
        if sent_at is None or not self._rtt_count:
            return ended_at + extra
        virtual_answer = max(ended_at, sent_at + self._rtt_ceiling())
        return virtual_answer - min(self.rtt_floor(), virtual_answer - sent_at) + extra

    def rate_limited(self) -> None:
        """The server answered 429: the limiter's assumption failed (or another client
        uses the key). Widen E at once, at most once per window: one violation often
        draws several 429s. The pause itself is the transport's (`pause`)."""
        self.total_rate_limited += 1
        if self.basis != "adaptive":
            return
        now = self.now()
        if self._last_widened is not None and now - self._last_widened < self.window:
            return
        self._last_widened = now
        widened = max(2 * self.extra_margin(now), self.rtt_spread(), MIN_WIDENING)
        self._extra = min(MAX_EXTRA_MARGIN, widened)
        self._extra_set_at = now

    # -- granting ---------------------------------------------------------------------

    def _next_free_at(self, now: float) -> float | None:
        """Earliest time a grant keeps the guarantee; None until a window starts."""
        ends = self._window_ends
        while ends and ends[0] <= now:
            heapq.heappop(ends)
        free_at = now
        occupied = self._in_flight + len(ends)
        if occupied >= self.rate:
            need = occupied - self.rate + 1  # windows that must end first
            if len(ends) < need:
                return None  # in-flight requests must start their window first
            free_at = ends[0] if need == 1 else heapq.nsmallest(need, ends)[-1]
        return max(free_at, self._paused_until)

    def _grant(self) -> Slot:
        self._in_flight += 1
        return Slot(self, 0.0)

    def _next_waiter(self) -> asyncio.Future[Slot] | None:
        for lane in Lane:
            queue = self._waiters[lane]
            while queue and queue[0].done():  # cancelled while waiting
                queue.popleft()
            if queue:
                return queue.popleft()
        return None

    def wake(self) -> None:
        """Re-check the waiters (a window started or a pause changed)."""
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
                return  # Slot._start_window() calls wake()
            if free_at > now:
                self._timer = loop.call_at(free_at, self._dispatch)
                return
            waiter = self._next_waiter()
            if waiter is None:
                return
            waiter.set_result(self._grant())

    async def acquire(self, lane: Lane = Lane.BACKFILL) -> Slot:
        """Wait for a slot. Call `slot.sent()` when the request leaves, `answered()` when
        its answer comes back, `done()` after (in a `finally`)."""
        await self._hold_if_fenced(None)
        start = self.now()
        if self._cold:
            self._cold = False
            self._paused_until = max(self._paused_until, start + self.window)
        if not self.waiting and self._next_free_at(start) == start:
            self.total_grants += 1
            return self._grant()
        waiter: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        self._waiters[lane].append(waiter)
        if self._timer is None:
            self._dispatch()
        try:
            slot = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Granted just as we were cancelled: start the slot's window so it
                # expires instead of blocking the key forever.
                waiter.result().done()
            else:
                waiter.cancel()
                # Gone from the queue now, not at the next grant: a key that is paused
                # or idle must not collect cancelled waiters.
                with contextlib.suppress(ValueError):
                    self._waiters[lane].remove(waiter)
            raise
        await self._hold_if_fenced(slot)  # the wait may have outlasted the lease
        waited = self.now() - start
        slot.waited = waited
        self.total_grants += 1
        self.total_wait_seconds += waited
        return slot

    async def _hold_if_fenced(self, slot: Slot | None) -> None:
        """Send nothing more once `guard` says the key is not ours: wait until the
        caller is cancelled (the lease keeper stops the tenants; raising instead would
        look like a failed request, and the tenant would record it)."""
        if self.guard is None or self.guard():
            return
        if slot is not None:
            slot.done()  # its window starts and ends: the key is not held up
        await asyncio.get_running_loop().create_future()

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


def _has_body(headers: Mapping[str, str]) -> bool:
    return headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in headers


async def _on_headers_sent(
    session: aiohttp.ClientSession,
    context: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    slot = getattr(context, "trace_request_ctx", None)
    if isinstance(slot, Slot):
        slot.sent(body_follows=_has_body(params.headers))


async def _on_chunk_sent(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
) -> None:
    slot = getattr(context, "trace_request_ctx", None)
    if isinstance(slot, Slot):
        slot.body_sent()


def slot_trace_config() -> aiohttp.TraceConfig:
    """Attach to the ClientSession so a `Slot` passed as `trace_request_ctx` learns
    the moment its request leaves: aiohttp calls the headers hook just before it writes
    a bodiless request to the socket, and the chunk hook just before each body chunk
    (the first carries the buffered headers), each in the same step as the write."""
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_on_headers_sent)
    config.on_request_chunk_sent.append(_on_chunk_sent)
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
    #: CRMs keep "response"; Quo's comes from `quo.rate_limit_basis` ("adaptive")
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
