"""The per-key limiter: exact sliding-window guarantee on sends, throughput, lanes, pauses."""

from __future__ import annotations

import asyncio
import random

import pytest

from crmsync.net.ratelimit import (
    Basis,
    Lane,
    LimiterRegistry,
    Limits,
    SlidingWindowLimiter,
    key_fingerprint,
)


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


@pytest.mark.parametrize("basis", ["response", "send"])
async def test_never_more_than_rate_sends_in_any_sliding_window(basis: Basis) -> None:
    # A short window keeps the test fast; the property does not depend on its length.
    limiter = SlidingWindowLimiter(5, window=0.1, basis=basis)
    sends = await _send_times(limiter, callers=20, per_caller=3)
    assert len(sends) == 60
    assert max_in_any_window(sends, 0.1 - 1e-6) <= 5


@pytest.mark.parametrize("basis", ["response", "send"])
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
