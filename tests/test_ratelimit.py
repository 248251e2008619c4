"""The per-key limiter: exact sliding-window guarantee, throughput, lanes, pauses."""

from __future__ import annotations

import asyncio

from crmsync.quo.ratelimit import Lane, LimiterRegistry, SlidingWindowLimiter, key_fingerprint


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


async def _grant_times(limiter: SlidingWindowLimiter, callers: int, per_caller: int,
                       lane: Lane = Lane.BACKFILL) -> list[float]:
    loop = asyncio.get_running_loop()
    grants: list[float] = []

    async def caller() -> None:
        for _ in range(per_caller):
            await limiter.acquire(lane)
            grants.append(loop.time())

    async with asyncio.TaskGroup() as tg:
        for _ in range(callers):
            tg.create_task(caller())
    return grants


async def test_never_more_than_rate_in_any_sliding_window() -> None:
    # A short window keeps the test fast; the property does not depend on its length.
    limiter = SlidingWindowLimiter(5, window=0.1)
    grants = await _grant_times(limiter, callers=20, per_caller=3)
    assert len(grants) == 60
    # Timers may fire a hair late, never early beyond the clock's resolution.
    assert max_in_any_window(grants, 0.1 - 1e-6) <= 5


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


async def test_backlog_uses_the_whole_rate() -> None:
    limiter = SlidingWindowLimiter(10, window=0.1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await _grant_times(limiter, callers=10, per_caller=10)
    elapsed = loop.time() - started
    # 100 grants at 10 per 0.1 s: the first 10 at once, then 9 more windows.
    assert elapsed < 0.9 / 0.95 + 0.05


async def test_live_lane_jumps_the_backfill_queue() -> None:
    limiter = SlidingWindowLimiter(1, window=0.05)
    order: list[str] = []

    async def take(name: str, lane: Lane) -> None:
        await limiter.acquire(lane)
        order.append(name)

    await limiter.acquire()  # the window is now full
    async with asyncio.TaskGroup() as tg:
        for i in range(5):
            tg.create_task(take(f"backfill{i}", Lane.BACKFILL))
        await asyncio.sleep(0)  # let the backfill callers queue up first
        tg.create_task(take("live", Lane.LIVE))
    # Live waits behind at most one backfill grant (here: none was mid-grant).
    assert order.index("live") <= 1


async def test_pause_holds_every_caller_of_the_key() -> None:
    limiter = SlidingWindowLimiter(100, window=1.0)
    loop = asyncio.get_running_loop()
    limiter.pause(0.2)
    started = loop.time()
    await asyncio.gather(*(limiter.acquire() for _ in range(3)))
    assert loop.time() - started >= 0.2 - 0.01


async def test_cancelled_waiter_does_not_take_a_slot_forever() -> None:
    limiter = SlidingWindowLimiter(1, window=0.05)
    await limiter.acquire()
    doomed = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    doomed.cancel()
    await asyncio.gather(doomed, return_exceptions=True)
    assert await asyncio.wait_for(limiter.acquire(), timeout=1.0) >= 0.0
    assert limiter.waiting == 0


def test_registry_shares_one_limiter_per_key_and_hides_the_key() -> None:
    registry = LimiterRegistry(10)
    assert registry.for_key("key-a") is registry.for_key("key-a")
    assert registry.for_key("key-a") is not registry.for_key("key-b")
    labels = [label for label, _ in registry.items()]
    assert "key-a" not in labels
    assert key_fingerprint("key-a") in labels
