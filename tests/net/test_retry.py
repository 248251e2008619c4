"""Backoff bounds and Retry-After parsing."""

from __future__ import annotations

import email.utils
import random

from crmsync.net.retry import RetryPolicy, parse_retry_after


def test_full_jitter_stays_within_the_exponential_ceiling() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=8.0)
    rng = random.Random(1)
    for attempt in range(8):
        ceiling = min(8.0, 0.5 * 2**attempt)
        delays = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spans the range, not a fixed delay
        assert min(delays) < ceiling * 0.2


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 4, usegmt=True)
    assert parse_retry_after(header, now=now) == 4.0
    assert parse_retry_after(email.utils.formatdate(now - 10, usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
