"""`ErrorKinds.check_ok`: a 2xx whose body reports an error (Metakocka's `opr_code`)
is raised, classified and retried exactly like the status it stands for."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import msgspec
import pytest
from aiohttp import web

from crmsync.adapters.errors import CRM_ERRORS
from crmsync.net.errors import ApiError, ErrorKinds, RateLimitedError, ServerError
from crmsync.net.ratelimit import Limiters, SlidingWindowLimiter
from crmsync.net.retry import RetryPolicy
from crmsync.net.transport import Transport

FAST = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.02)


def _check(body: bytes, method: str, route: str) -> ApiError | None:
    parsed = msgspec.json.decode(body)
    code = parsed.get("error") if isinstance(parsed, dict) else None
    if code == "busy":
        return CRM_ERRORS.rate_limited("busy", method=method, route=route)
    if code == "boom":
        return CRM_ERRORS.server("boom", method=method, route=route)
    return None


KINDS = ErrorKinds(
    auth=CRM_ERRORS.auth, not_found=CRM_ERRORS.not_found, conflict=CRM_ERRORS.conflict,
    rejected=CRM_ERRORS.rejected, rate_limited=CRM_ERRORS.rate_limited,
    server=CRM_ERRORS.server, transport=CRM_ERRORS.transport, decode=CRM_ERRORS.decode,
    check_ok=_check,
)


@contextlib.asynccontextmanager
async def scripted(answers: list[dict[str, str]]) -> AsyncIterator[tuple[Transport, list[int]]]:
    """A server answering 200 with `answers` in turn (the last one repeats)."""
    seen: list[int] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(1)
        return web.json_response(answers[min(len(seen), len(answers)) - 1])

    app = web.Application()
    app.router.add_post("/call", handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as session:
            limiter = SlidingWindowLimiter(1000)
            yield Transport(session, api="t", base_url=url, headers={},
                            limiters=Limiters.shared(limiter), errors=KINDS,
                            retry=FAST), seen
    finally:
        await runner.cleanup()


Call = Callable[[Transport], Awaitable[object]]


async def test_a_200_error_body_is_retried_like_a_429() -> None:
    """1. two 200s with a rate-limit error body, then a success
    Result: a write that is not idempotent still succeeds on the third call (a rate
    limit means nothing was processed), and the caller sees the success body."""
    async with scripted([{"error": "busy"}, {"error": "busy"}, {"ok": "yes"}]) as (http, seen):
        answer = await http.call("POST", "/call", json={}, read=False, idempotent=False)
    assert answer == {"ok": "yes"}
    assert len(seen) == 3


async def test_a_200_server_error_is_retried_only_when_safe() -> None:
    """1. the API answers 200 with a server-error body, then a success
    Result: a read is retried and succeeds; an unsafe write raises at once (one call)."""
    async with scripted([{"error": "boom"}, {"ok": "yes"}]) as (http, seen):
        assert await http.call("POST", "/call", json={}, read=True) == {"ok": "yes"}
        assert len(seen) == 2
    async with scripted([{"error": "boom"}, {"ok": "yes"}]) as (http, seen):
        with pytest.raises(ServerError):
            await http.call("POST", "/call", json={}, read=False, idempotent=False)
        assert len(seen) == 1


async def test_retries_of_a_200_error_body_end_with_the_error() -> None:
    """Result: after `max_retries` the 200-with-error is raised as its kind."""
    async with scripted([{"error": "busy"}]) as (http, seen):
        with pytest.raises(RateLimitedError):
            await http.call("POST", "/call", json={}, read=True)
    assert len(seen) == FAST.max_retries + 1


async def test_without_check_ok_a_200_is_a_success() -> None:
    """Result: an API without `check_ok` (every one before Metakocka) is unchanged."""
    async with scripted([{"error": "busy"}]) as (http, _):
        plain = Transport(http._session, api="t", base_url=http._base_url, headers={},
                          limiters=http._limiters, errors=CRM_ERRORS, retry=FAST)
        assert await plain.call("POST", "/call", json={}) == {"error": "busy"}
