"""`IntakeGuard` alone: throttling keys, the per-source bucket and the bounds on
off-loop verification (real threads; the listener's use of it is in `test_hostile.py`)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from crmsync.web.guard import IntakeGuard, ThrottledError


@pytest.mark.parametrize(
    ("remote", "source"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),  # same /64: one host, one bucket
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "unknown"),
        ("/run/crmsync.sock", "/run/crmsync.sock"),
    ],
)
def test_the_throttling_key_is_the_address_or_the_ipv6_slash_64(
    remote: str | None, source: str
) -> None:
    assert IntakeGuard.source_of(remote) == source


async def test_a_source_is_throttled_after_its_burst_of_failures_and_only_it() -> None:
    guard = IntakeGuard(failures=3, period=30.0)
    for _ in range(3):
        guard.check("a")
        await guard.failed("a")
    with pytest.raises(ThrottledError) as caught:
        guard.check("a")
    assert caught.value.retry_after == 10  # one failure drains every 30 / 3 s
    guard.check("b")
    await guard.failed("a")  # a full bucket stays full and never waits


async def test_offloaded_work_is_bounded_per_source_and_in_all() -> None:
    """1. one thread, at most 3 offloaded in all, a failure budget of 2 per source
    2. source a offloads two verifications that block in their thread
    3. a third from a, then one each from b and c
    Result: a's third is refused (its two pending ones could both fail); b's waits for
    the thread; c's is refused (three are running or waiting); once released, every
    accepted one returns its result."""
    guard = IntakeGuard(failures=2, threads=1, max_offloaded=3)
    release = threading.Event()
    started = threading.Semaphore(0)

    def blocked() -> bool:
        started.release()
        return release.wait(10)

    a1 = asyncio.create_task(guard.offloader("a")(blocked))
    a2 = asyncio.create_task(guard.offloader("a")(blocked))
    await asyncio.to_thread(started.acquire, True, 5)  # a1 runs; a2 waits for the thread
    with pytest.raises(ThrottledError):
        await guard.offloader("a")(blocked)
    b1 = asyncio.create_task(guard.offloader("b")(blocked))
    await asyncio.sleep(0)  # one loop step: b1 counts itself before its first await
    with pytest.raises(ThrottledError, match="in progress"):
        await guard.offloader("c")(blocked)
    release.set()
    assert await asyncio.gather(a1, a2, b1) == [True, True, True]
    guard.check("a")  # nothing pending any more
    assert await guard.offloader("c")(lambda: True)
