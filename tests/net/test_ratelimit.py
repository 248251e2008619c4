"""The per-key limiter: exact sliding-window guarantee on sends and, for the adaptive
basis, on arrivals at a server with the delays it assumes; its margin; lanes, pauses."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import socket
import threading
import time
from collections.abc import Callable

import aiohttp
import pytest

from crmsync.config.model import QuoConfig
from crmsync.net.ratelimit import (
    FLOOR_BUCKET,
    FLOOR_HORIZON,
    MAX_EXTRA_MARGIN,
    MIN_FLOOR_SPAN,
    MIN_RTT_SAMPLES,
    MIN_WIDENING,
    RTT_SAMPLES,
    Basis,
    Lane,
    LimiterRegistry,
    Limits,
    SlidingWindowLimiter,
    key_fingerprint,
    slot_trace_config,
)
from crmsync.net.retry import RetryPolicy
from crmsync.quo.client import QuoClient
from crmsync.sim.quo import QuoSimConfig, run_quo_simulator


def max_in_any_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_event_loop_runs_in_debug_mode() -> None:
    assert asyncio.get_running_loop().get_debug()


async def _send_times(
    limiter: SlidingWindowLimiter,
    callers: int,
    per_caller: int,
    *,
    send_delay: tuple[float, float] = (0.0, 0.0),
) -> list[float]:
    """Each caller takes a slot, 'sends' after a random delay, and records the send."""
    loop = asyncio.get_running_loop()
    rng = random.Random(7)
    sends: list[float] = []

    async def caller() -> None:
        for _ in range(per_caller):
            slot = await limiter.acquire()
            await asyncio.sleep(rng.uniform(*send_delay))  # connection setup, busy loop
            slot.sent()
            sends.append(loop.time())
            slot.done()

    async with asyncio.TaskGroup() as tg:
        for _ in range(callers):
            tg.create_task(caller())
    return sends


@pytest.mark.parametrize("basis", ["adaptive", "response", "send"])
async def test_never_more_than_rate_sends_in_any_sliding_window(basis: Basis) -> None:
    # A short window keeps the test fast; the property does not depend on its length.
    limiter = SlidingWindowLimiter(5, window=0.1, basis=basis)
    sends = await _send_times(limiter, callers=20, per_caller=3)
    assert len(sends) == 60
    assert max_in_any_window(sends, 0.1 - 1e-6) <= 5


@pytest.mark.parametrize("basis", ["adaptive", "response", "send"])
async def test_guarantee_holds_when_sends_lag_behind_grants(basis: Basis) -> None:
    """Grants at once, sends spread over up to 40 ms: the window counts the sends."""
    limiter = SlidingWindowLimiter(5, window=0.1, basis=basis)
    sends = await _send_times(limiter, callers=20, per_caller=3, send_delay=(0.0, 0.04))
    assert max_in_any_window(sends, 0.1 - 1e-6) <= 5


async def test_leaky_bucket_would_have_allowed_a_double_burst() -> None:
    """Why not plain aiolimiter: its AsyncLimiter(N, 1) lets ~2N start in one second."""
    from aiolimiter import AsyncLimiter

    loop = asyncio.get_running_loop()
    bucket = AsyncLimiter(5, 0.1)
    times: list[float] = []

    async def caller() -> None:
        async with bucket:
            times.append(loop.time())

    async with asyncio.TaskGroup() as tg:
        for _ in range(12):
            tg.create_task(caller())
    assert max_in_any_window(times, 0.1 - 1e-6) > 5


async def test_response_basis_counts_from_the_answer_not_the_send() -> None:
    """The server may see a request any time before it answers: the window starts then."""
    limiter = SlidingWindowLimiter(1, window=0.05)
    slot = await limiter.acquire()
    slot.sent()  # the trace hook: ignored for the response basis
    blocked = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.1)  # past the window counted from the send
    assert not blocked.done()
    slot.done()
    (await asyncio.wait_for(blocked, timeout=1.0)).done()


async def test_an_unreported_send_holds_its_slot_until_done() -> None:
    limiter = SlidingWindowLimiter(1, window=0.01)
    slot = await limiter.acquire()
    blocked = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.05)  # far past the window: only the missing send holds it
    assert not blocked.done()
    slot.done()
    second = await asyncio.wait_for(blocked, timeout=1.0)
    second.done()


async def test_live_lane_jumps_the_backfill_queue() -> None:
    limiter = SlidingWindowLimiter(1, window=0.05)
    order: list[str] = []

    async def take(name: str, lane: Lane) -> None:
        slot = await limiter.acquire(lane)
        order.append(name)
        slot.done()

    (await limiter.acquire()).done()  # the window is now full
    async with asyncio.TaskGroup() as tg:
        for i in range(5):
            tg.create_task(take(f"backfill{i}", Lane.BACKFILL))
        await asyncio.sleep(0)  # let the backfill callers queue up first
        tg.create_task(take("live", Lane.LIVE))
    # Live waits behind at most one backfill grant.
    assert order.index("live") <= 1


async def test_pause_holds_every_caller_of_the_key() -> None:
    limiter = SlidingWindowLimiter(100, window=1.0)
    loop = asyncio.get_running_loop()
    limiter.pause(0.2)
    started = loop.time()
    slots = await asyncio.gather(*(limiter.acquire() for _ in range(3)))
    assert loop.time() - started >= 0.2 - 0.01
    for slot in slots:
        slot.done()


async def test_cancelled_waiter_does_not_take_a_slot_forever() -> None:
    limiter = SlidingWindowLimiter(1, window=0.05)
    (await limiter.acquire()).done()
    doomed = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    doomed.cancel()
    await asyncio.gather(doomed, return_exceptions=True)
    slot = await asyncio.wait_for(limiter.acquire(), timeout=1.0)
    slot.done()
    assert limiter.waiting == 0


def test_registry_shares_one_limiter_per_key_and_hides_the_key() -> None:
    registry = LimiterRegistry()
    quo = Limits(10)
    assert registry.for_account("quo", "key-a", quo) == registry.for_account("quo", "key-a", quo)
    a = registry.for_account("quo", "key-a", quo)
    assert a.read is a.write  # one budget for every Quo request
    assert a.read is not registry.for_account("quo", "key-b", quo).read
    assert a.read is not registry.for_account("attio", "key-a", quo).read
    labels = [label for label, _ in registry.items()]
    assert not any("key-a" in label for label in labels)
    assert f"quo:{key_fingerprint('key-a')}" in labels


def test_registry_splits_reads_and_writes_when_an_api_budgets_them_apart() -> None:
    limiters = LimiterRegistry().for_account("attio", "key", Limits(100, write_rate=25))
    assert (limiters.read.rate, limiters.write.rate) == (100, 25)


async def test_a_warm_limiter_holds_its_first_request_one_window() -> None:
    """A new process cannot see what its predecessor sent with the key a moment ago."""
    warm = LimiterRegistry().for_account("quo", "key", Limits(10, window=0.2, warm=True)).read
    loop = asyncio.get_running_loop()
    started = loop.time()
    (await warm.acquire()).done()
    assert loop.time() - started >= 0.2
    cold = LimiterRegistry().for_account("quo", "key", Limits(10, window=0.2)).read
    started = loop.time()
    (await cold.acquire()).done()
    assert loop.time() - started < 0.1


# -- the adaptive basis ----------------------------------------------------------------

#: the server's "second" in the arrival tests below, and the limiter's slack over it
SECOND = 0.1
MARGIN = 0.005

Delays = Callable[[int, random.Random], tuple[float, float]]


def _floors_or(out: tuple[float, float], back: tuple[float, float]) -> Delays:
    """Every 4th request travels at both floors (so the fastest round trip is the floor
    sum, which the limiter assumes); the others draw uniformly from the ranges."""

    def delays(k: int, rng: random.Random) -> tuple[float, float]:
        if k % 4 == 0:
            return out[0], back[0]
        return rng.uniform(*out), rng.uniform(*back)

    return delays


def _with_stragglers(delays: Delays) -> Delays:
    """One request in ten takes 0.8 of the server's second longer to get there."""

    def straggling(k: int, rng: random.Random) -> tuple[float, float]:
        out, back = delays(k, rng)
        return (out + 0.8 * SECOND, back) if k % 10 == 7 else (out, back)

    return straggling


NETWORKS: dict[str, Delays] = {
    # way out 10-40 ms (30 % of the second), way back 10-12 ms
    "jitter on the way out": _floors_or((0.01, 0.04), (0.01, 0.012)),
    "jitter on the way back": _floors_or((0.01, 0.012), (0.01, 0.04)),
    "both, and stragglers": _with_stragglers(_floors_or((0.005, 0.02), (0.005, 0.02))),
}


async def _arrivals(
    limiter: SlidingWindowLimiter, delays: Delays, *, requests: int = 60, callers: int = 15
) -> list[float]:
    """Requests through `limiter` over a network with `delays`: each arrives at the
    server (whose clock is ours) `out` after its send and is answered `back` later.
    Returns the arrival times, as the server counts them."""
    rng = random.Random(11)
    arrivals: list[float] = []
    issued = 0

    async def caller() -> None:
        nonlocal issued
        while issued < requests:
            k = issued
            issued += 1
            slot = await limiter.acquire()
            try:
                slot.sent()
                assert slot.sent_at is not None
                out, back = delays(k, rng)
                arrivals.append(slot.sent_at + out)
                # The network and the server's work: this is the delay, not a wait for
                # a condition. Oversleeping only lengthens the way back.
                await asyncio.sleep(out + back)
                slot.answered(200)
            finally:
                slot.done()

    async with asyncio.TaskGroup() as tg:
        for _ in range(callers):
            tg.create_task(caller())
    return arrivals


@pytest.mark.parametrize("network", list(NETWORKS))
async def test_adaptive_never_more_than_rate_arrivals_at_the_server(network: str) -> None:
    """1. a server that counts arrivals over its own sliding second
    2. round trips that vary by up to 30 % of that second, on the way out, on the way
       back, or both with stragglers 0.8 s late, never faster than the floor
    3. 60 requests from 15 callers through an adaptive limiter (margin 5 %)
    Result: no sliding second at the server holds more than the limit."""
    limiter = SlidingWindowLimiter(5, window=SECOND + MARGIN, basis="adaptive")
    arrivals = await _arrivals(limiter, NETWORKS[network])
    assert len(arrivals) == 60
    assert max_in_any_window(arrivals, SECOND) <= 5
    assert limiter.rtt_floor() > 0  # it did learn the floor, not just count like "response"


async def test_the_same_network_breaks_the_send_basis() -> None:
    """The arrival test is sharp: a send basis with the same margin lets the way-out
    jitter put more than the limit into one of the server's seconds."""
    limiter = SlidingWindowLimiter(5, window=SECOND + MARGIN, basis="send")
    arrivals = await _arrivals(limiter, NETWORKS["jitter on the way out"])
    assert max_in_any_window(arrivals, SECOND) > 5


def _learn(
    limiter: SlidingWindowLimiter, *round_trips: float, start: float = 0.0, every: float = 1.0
) -> float:
    """Answers with these round trips, sent `every` seconds from `start` on, at made-up
    times (the arithmetic is the clock's); returns when the next would be sent."""
    sent = start
    for rtt in round_trips:
        limiter.answered_window_start(sent, sent + rtt)
        sent += every
    return sent


def test_adaptive_counts_like_response_until_it_knows_the_floor() -> None:
    limiter = SlidingWindowLimiter(10, window=1.02, basis="adaptive")
    _learn(limiter, *[0.1] * (MIN_RTT_SAMPLES - 2))
    # The 19th answer: too few to trust their fastest, the window starts at the answer.
    assert limiter.answered_window_start(50.0, 50.1) == pytest.approx(50.1)
    # The 20th: the floor is known and a floor-speed answer costs nothing over the send.
    assert limiter.answered_window_start(60.0, 60.1) == pytest.approx(60.0)
    assert limiter.rtt_floor() == pytest.approx(0.1)


def test_a_burst_delayed_alike_does_not_set_the_floor() -> None:
    """1. 100 requests sent at once, all answered 150 ms later (the server stalled)
    2. then answers keep coming, at a 2 ms round trip, but for less than
       `MIN_FLOOR_SPAN` windows
    Result: until answers span that long, each slot counts from its answer, as with
    the response basis; from then on, from the fastest.
    Regression: the burst alone set F = 0.15 s and each of its slots' window started
    at its send; requests sent a second later reached a simulator that had counted the
    burst 150 ms late: 174 in one second at a limit of 100."""
    window = 1.02
    limiter = SlidingWindowLimiter(100, window=window, basis="adaptive")
    _learn(limiter, *[0.15] * 100, start=9.4, every=0.0)
    assert limiter.rtt_floor() == 0.0
    assert limiter.answered_window_start(9.4, 9.55) == pytest.approx(9.55)
    sent = _learn(limiter, *[0.002] * 50, start=10.5, every=0.07)
    assert sent - 0.07 + 0.002 - 9.55 < MIN_FLOOR_SPAN * window
    assert limiter.rtt_floor() == 0.0
    _learn(limiter, 0.002, start=9.55 + MIN_FLOOR_SPAN * window)
    assert limiter.rtt_floor() == pytest.approx(0.002)


def test_a_slower_round_trip_holds_its_slot_longer_at_once() -> None:
    """Each slot pays its own excess over the floor, from the first slow answer on."""
    limiter = SlidingWindowLimiter(10, window=1.02, basis="adaptive")
    _learn(limiter, *[0.1] * MIN_RTT_SAMPLES)
    assert limiter.answered_window_start(10.0, 10.16) == pytest.approx(10.06)
    assert limiter.answered_window_start(20.0, 20.1) == pytest.approx(20.0)


def test_a_faster_floor_widens_at_once_and_narrows_only_after_the_horizon() -> None:
    """A faster answer lowers F at once; slower ones raise it only once the fast one
    is `FLOOR_HORIZON` windows old (within one `FLOOR_BUCKET`): a spell of slow
    answers, a busy server, does not make the next fast request look slow."""
    window = 1.02
    limiter = SlidingWindowLimiter(10, window=window, basis="adaptive")
    sent = _learn(limiter, *[0.1] * MIN_RTT_SAMPLES)
    sent = _learn(limiter, 0.08, start=sent)  # a faster way: charged from it at once
    assert limiter.answered_window_start(sent, sent + 0.1) == pytest.approx(sent + 0.02)
    fast_at = sent + 0.08
    # Slow answers, one a second, until the fast one has nearly left the horizon.
    horizon_start = (FLOOR_HORIZON - FLOOR_BUCKET) * window
    sent = _learn(limiter, *[0.3] * int(horizon_start - 2), start=sent + 1)
    assert sent + 0.3 - fast_at < FLOOR_HORIZON * window
    assert limiter.rtt_floor() == pytest.approx(0.08)
    _learn(limiter, 0.3, start=fast_at + (FLOOR_HORIZON + FLOOR_BUCKET) * window)
    assert limiter.rtt_floor() == pytest.approx(0.3)


def test_a_request_without_an_answer_counts_as_the_slowest_recent_one() -> None:
    limiter = SlidingWindowLimiter(10, window=1.02, basis="adaptive")
    # No round trip known yet: its window starts when it ended, like "response".
    assert limiter.unanswered_window_start(1.0, 1.01) == pytest.approx(1.01)
    _learn(limiter, *[0.1] * (MIN_RTT_SAMPLES - 1), 0.2)
    # Cancelled 10 ms after its send: as if answered at the slowest recent round trip.
    assert limiter.unanswered_window_start(10.0, 10.01) == pytest.approx(10.1)
    # Timed out after 30 s: the window starts when it gave up (minus the floor).
    assert limiter.unanswered_window_start(10.0, 40.0) == pytest.approx(39.9)
    # No send reported (it never left): its window starts at its end.
    assert limiter.unanswered_window_start(None, 50.0) == pytest.approx(50.0)


async def test_a_429_widens_the_margin_at_once_and_it_narrows_slowly() -> None:
    limiter = SlidingWindowLimiter(10, window=0.02, basis="adaptive", half_life=60.0)
    _learn(limiter, *[0.1] * (MIN_RTT_SAMPLES - 1), 0.14)
    assert limiter.extra_margin() == 0.0

    limiter.rate_limited()
    # At once, to the spread of recent round trips.
    now = limiter.now()
    assert limiter.extra_margin(now) == pytest.approx(0.04, rel=1e-3)
    assert limiter.answered_window_start(now, now + 0.1) == pytest.approx(now + 0.04, rel=1e-3)
    limiter.rate_limited()  # the same violation's other 429s: no second widening
    assert limiter.extra_margin(now) == pytest.approx(0.04, rel=1e-3)

    await asyncio.sleep(0.03)  # one window later: a new violation
    limiter.rate_limited()
    widened_at = limiter.now()
    assert limiter.extra_margin(widened_at) == pytest.approx(0.08, rel=1e-3)
    # Slowly back: half after one half-life, an eighth after three.
    assert limiter.extra_margin(widened_at + 60.0) == pytest.approx(0.04, rel=1e-3)
    assert limiter.extra_margin(widened_at + 180.0) == pytest.approx(0.01, rel=1e-3)

    for _ in range(8):  # 429 after 429: doubling, but never past the cap
        await asyncio.sleep(0.03)
        limiter.rate_limited()
    assert limiter.extra_margin() == pytest.approx(MAX_EXTRA_MARGIN, rel=1e-3)
    assert limiter.total_rate_limited == 11


@pytest.mark.parametrize("basis", ["response", "send"])
async def test_a_429_leaves_the_fixed_bases_as_configured(basis: Basis) -> None:
    limiter = SlidingWindowLimiter(10, window=1.0, basis=basis)
    limiter.rate_limited()
    assert limiter.extra_margin() == 0.0
    assert limiter.total_rate_limited == 1


async def test_quo_answers_teach_the_floor_and_a_429_widens_the_key() -> None:
    """1. the Quo simulator on 127.0.0.1, a session with the slot trace hook
    2. calls through an adaptive limiter until it knows the floor, then one answered 429
    Result: the round trips were timed from the send to the answer (a floor is
    known), the 429 widened the margin at once, and the call succeeded on its retry."""
    config = QuoSimConfig(api_keys=["key"], requests_per_second=100)
    async with (
        run_quo_simulator(config=config) as (sim, url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as session,
    ):
        # A short window (80/s): the floor is known once answers span `MIN_FLOOR_SPAN`
        # of them.
        limiter = SlidingWindowLimiter(4, window=0.05, basis="adaptive")
        quo = QuoClient(session, base_url=url, api_key="key", limiter=limiter, tenant="t",
                        retry=RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.02))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while limiter.rtt_floor() == 0 and loop.time() < deadline:
            await quo.list_phone_numbers()
        floor = limiter.rtt_floor()
        assert 0 < floor < 1.0
        assert limiter.extra_margin() == 0.0

        sim.faults.force_429(1)
        await quo.list_phone_numbers()
        assert limiter.total_rate_limited == 1
        assert limiter.extra_margin() >= MIN_WIDENING * 0.99
        assert sim.rate_limited == 1


def test_quo_uses_the_adaptive_basis_by_default() -> None:
    assert QuoConfig().rate_limit_basis == "adaptive"


def test_recent_round_trip_spread_matches_a_full_rescan() -> None:
    """The monotonic queues give the min and max of exactly the last `RTT_SAMPLES`."""
    limiter = SlidingWindowLimiter(10, window=1.02, basis="adaptive")
    rng = random.Random(3)
    seen: list[float] = []
    for _ in range(3 * RTT_SAMPLES):
        # Trends, plateaus and repeats: the cases a monotonic queue gets wrong.
        rtt = round(rng.choice([rng.uniform(0.05, 0.5), seen[-1] if seen else 0.1]), 3)
        _learn(limiter, rtt)
        seen.append(rtt)
        recent = seen[-RTT_SAMPLES:]
        assert limiter.rtt_spread() == pytest.approx(max(recent) - min(recent))


async def test_windows_that_end_out_of_grant_order_free_the_key_in_end_order() -> None:
    """1. two slots granted (rate 2), the second's window starts first 2. a third waits
    Result: it is granted when the earliest window ends, not the first granted one's."""
    limiter = SlidingWindowLimiter(2, window=0.3, basis="send")
    loop = asyncio.get_running_loop()
    first, second = await limiter.acquire(), await limiter.acquire()
    second.sent()
    early_end = loop.time() + 0.3
    await asyncio.sleep(0.1)
    first.sent()
    third = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    assert not third.done() and limiter.occupied() == 2 and limiter.in_flight == 0
    granted = await third
    assert early_end <= loop.time() < early_end + 0.08  # first's window ends 0.1 s later
    assert limiter.in_flight == 1
    for slot in (first, second, granted):
        slot.done()
    assert limiter.in_flight == 0


class _StampingServer:
    """An HTTP/1.1 server in a thread of its own that stamps, with the loop's clock
    (`time.monotonic`), when each request's first bytes arrive: unlike a server on the
    test's loop, it sees them the moment they leave, however busy that loop is."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/"
        self.arrivals: list[float] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                connection, _ = self._listener.accept()
                threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection, contextlib.suppress(OSError):
            while True:
                chunk = connection.recv(65536)
                if not chunk:
                    return
                self.arrivals.append(time.monotonic())
                while b"\r\n\r\n" not in chunk:  # the rest of the headers
                    chunk += connection.recv(65536)
                head, _, body = chunk.partition(b"\r\n\r\n")
                declared = re.search(rb"(?i)content-length: *(\d+)", head)
                length = int(declared[1]) if declared else 0
                while len(body) < length:
                    body += connection.recv(65536)
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    def close(self) -> None:
        self._listener.close()


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_request_counts_as_sent_when_its_bytes_leave_not_before(method: str) -> None:
    """1. a server in its own thread stamps each request's arrival
    2. a GET and a POST (JSON body) through a session with the slot trace hook; right
       after the headers hook, a callback holds the loop 80 ms (a busy loop: on
       Python 3.11 aiohttp writes a body, headers coalesced, in a task of its own, after it)
    Result: the slot's send stamp is no later than the arrival, and within 20 ms of it.
    Regression: a POST's send was stamped at the headers hook, 80 ms before it left,
    which made its round trip look 80 ms longer than it was: an adaptive floor that
    high let the next second's requests reach Quo inside this one's."""
    server = _StampingServer()
    loop = asyncio.get_running_loop()
    loop.slow_callback_duration = 1.0  # the hold is the point of the test

    async def busy_loop_after_headers(
        session: aiohttp.ClientSession, context: object, params: object
    ) -> None:
        loop.call_soon(time.sleep, 0.08)

    hold = aiohttp.TraceConfig()
    hold.on_request_headers_sent.append(busy_loop_after_headers)
    limiter = SlidingWindowLimiter(10, window=1.02, basis="adaptive")
    try:
        async with aiohttp.ClientSession(trace_configs=[slot_trace_config(), hold]) as session:
            slot = await limiter.acquire()
            body = {"name": "x" * 100} if method == "POST" else None
            async with session.request(
                method, server.url, json=body, trace_request_ctx=slot
            ) as answer:
                slot.answered(answer.status)
            slot.done()
    finally:
        server.close()
    assert answer.status == 200 and len(server.arrivals) == 1
    assert slot.sent_at is not None
    assert slot.sent_at <= server.arrivals[0] + 0.002  # the ms clock of uvloop, if used
    assert server.arrivals[0] - slot.sent_at < 0.02
