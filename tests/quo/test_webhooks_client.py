"""The 2026-03-30 webhook client against the strict simulator: every route, its
version header, typed errors from the 2026 envelope, and one limiter with v1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import msgspec
import pytest

from crmsync.net.ratelimit import SlidingWindowLimiter, slot_trace_config
from crmsync.net.retry import RetryPolicy
from crmsync.quo.client import QuoClient
from crmsync.quo.errors import QuoAuthError, QuoNotFoundError, QuoValidationError
from crmsync.quo.models import VersionedWebhookInput, VersionedWebhookPatch
from crmsync.quo.webhooks import (
    API_VERSION,
    QuoWebhooksClient,
    envelope_error_body,
)
from crmsync.services.catch_up import parse_time, rfc3339
from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.testing import wait_until

KEY = "test-key"
URL = "http://127.0.0.1:9/webhooks/acme/quo"  # nobody listens: deliveries fail fast


@dataclass
class Env:
    sim: QuoSim
    hooks: QuoWebhooksClient
    quo: QuoClient
    session: aiohttp.ClientSession
    root: str


def clients(
    session: aiohttp.ClientSession, base_url: str, limiter: SlidingWindowLimiter,
    key: str = KEY,
) -> tuple[QuoClient, QuoWebhooksClient]:
    retry = RetryPolicy(max_retries=3, base_delay=0.01, max_delay=0.05)
    quo = QuoClient(session, base_url=base_url, api_key=key, limiter=limiter, tenant="t1",
                    timeout=5, retry=retry)
    hooks = QuoWebhooksClient(session, base_url=base_url.removesuffix("/v1"), api_key=key,
                              limiter=limiter, tenant="t1", timeout=5, retry=retry)
    return quo, hooks


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    config = QuoSimConfig(api_keys=[KEY], requests_per_second=1000,
                          webhook_retry_schedule=(0.0,))
    async with (
        run_quo_simulator(config=config) as (sim, base_url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as session,
    ):
        quo, hooks = clients(session, base_url, SlidingWindowLimiter(1000))
        yield Env(sim, hooks, quo, session, base_url.removesuffix("/v1"))


def new_webhook(**fields: object) -> VersionedWebhookInput:
    base: dict[str, object] = {"url": URL, "events": ["message.received", "call.completed"],
                               "label": "crmsync acme"}
    base.update(fields)
    return msgspec.convert(base, VersionedWebhookInput)


async def test_create_list_get_patch_delete(env: Env) -> None:
    created = await env.hooks.create(new_webhook(status="disabled"))
    assert created.id.isdigit()
    assert created.key is not None and created.key.startswith("whsec_")
    assert created.status == "disabled"
    assert created.api_version == API_VERSION
    assert created.resource_ids == ["*"]  # omitted means every number

    (listed,) = await env.hooks.list_all()
    assert listed.id == created.id
    assert listed.key is None  # only create and rotate show it
    got = await env.hooks.get(created.id)
    assert (got.url, got.events) == (URL, ["message.received", "call.completed"])

    numbers = sorted(p.id for p in await env.quo.list_phone_numbers())
    patched = await env.hooks.update(created.id, VersionedWebhookPatch(
        status="enabled", events=["message.received"], resource_ids=numbers,
    ))
    assert patched.enabled
    assert patched.events == ["message.received"]
    assert patched.resource_ids == numbers
    assert env.sim.webhooks_v2[created.id]["label"] == "crmsync acme"  # untouched

    await env.hooks.delete(created.id)
    assert env.sim.webhooks_v2 == {}
    await env.hooks.delete(created.id)  # already gone: the desired state, no error
    assert env.sim.count("DELETE", "/webhooks/{id}", 204) == 1
    assert env.sim.count("DELETE", "/webhooks/{id}", 404) == 1


async def test_every_request_carries_the_version_header(env: Env) -> None:
    """Quo answers 400 before auth without it; the client never sees that."""
    await env.hooks.create(new_webhook())
    await env.hooks.list_all()
    assert env.sim.count("POST", "/webhooks", 201) == 1
    assert env.sim.count("GET", "/webhooks", 200) == 1
    async with env.session.get(env.root + "/webhooks", headers={"Authorization": KEY}) as r:
        body = await r.json()
    assert r.status == 400
    assert "Quo-Api-Version" in body["message"]


async def test_rotate_returns_a_new_key_that_signs_from_then_on(env: Env) -> None:
    created = await env.hooks.create(new_webhook())
    rotated = await env.hooks.rotate(created.id)
    assert rotated.startswith("whsec_")
    assert rotated != created.key
    assert env.sim.webhooks_v2[created.id]["key"] == rotated


async def test_test_event_its_delivery_detail_and_a_manual_retry(env: Env) -> None:
    created = await env.hooks.create(new_webhook(status="disabled"))
    sent = await env.hooks.send_test_event(created.id, "message.received")
    assert sent.type == "message.received"

    async def settled() -> bool:
        page = await env.hooks.delivery_page(created.id)
        return bool(page.data) and page.data[0].status == "failed"

    await wait_until(settled, within=10, message="the test delivery failed (no listener)")
    (delivery,) = (await env.hooks.delivery_page(created.id)).data
    assert delivery.event_type == "message.received"
    assert delivery.event_id is None  # test deliveries carry no event id
    detail = await env.hooks.get_delivery(created.id, delivery.id)
    (attempt,) = detail.attempts
    assert attempt.response_status_code == 0  # no answer: connection refused
    assert attempt.trigger_type == "scheduled"
    assert isinstance(detail.request_body, str) and "message.received" in detail.request_body

    await env.hooks.retry_delivery(created.id, delivery.id)

    async def retried() -> bool:
        found = await env.hooks.get_delivery(created.id, delivery.id)
        return len(found.attempts) == 2

    await wait_until(retried, within=10, message="a manual attempt")
    detail = await env.hooks.get_delivery(created.id, delivery.id)
    assert [a.trigger_type for a in detail.attempts] == ["manual", "scheduled"]


async def test_deliveries_walk_every_page_and_filter(env: Env) -> None:
    created = await env.hooks.create(new_webhook(status="disabled"))
    for _ in range(7):
        await env.hooks.send_test_event(created.id, "message.received")
    await env.hooks.send_test_event(created.id, "call.completed")
    await wait_until(lambda: env.sim.hooks.by_status()["failed"] == 8, within=10,
                     message="8 failed test deliveries")
    pages = [page async for page in env.hooks.deliveries(created.id)]
    assert len([d for page in pages for d in page]) == 8
    small = await env.hooks.delivery_page(created.id, page_size=3)
    assert len(small.data) == 3 and small.next_cursor
    calls = [d async for page in env.hooks.deliveries(created.id, event_type="call.completed")
             for d in page]
    assert [d.event_type for d in calls] == ["call.completed"]
    assert [d async for page in env.hooks.deliveries(created.id, status="success")
            for d in page] == []
    newest = parse_time(small.data[0].created_at)
    assert newest is not None
    # (the log shows milliseconds: one more, so the newest itself is not "after")
    after = rfc3339(newest + 0.001)
    later = [d async for page in env.hooks.deliveries(created.id, created_after=after)
             for d in page]
    assert later == []
    earlier = rfc3339(newest - 3600)
    assert len([d async for page in env.hooks.deliveries(created.id, created_after=earlier)
                for d in page]) == 8


async def test_errors_are_typed_from_the_2026_envelope(env: Env) -> None:
    with pytest.raises(QuoNotFoundError, match="Webhook with ID 404 not found"):
        await env.hooks.get("404")
    with pytest.raises(QuoValidationError) as bad_id:
        await env.hooks.get("abc")
    assert "/webhookId" in str(bad_id.value)
    assert bad_id.value.status == 400
    with pytest.raises(QuoValidationError) as bad_body:
        await env.hooks.create(new_webhook(events=[]))
    assert "/events" in str(bad_body.value)
    _, other = clients(env.session, env.root + "/v1", SlidingWindowLimiter(1000), key="nope")
    with pytest.raises(QuoAuthError):
        await other.list_all()


def test_envelope_error_body_quotes_paths_code_and_trace() -> None:
    body = msgspec.json.encode({
        "title": "Bad Request", "message": "Validation failed for 4 fields.",
        "docs": "https://quo.com/docs", "trace": "689", "code": "0304400",
        "errors": [{"path": f"/f{i}", "message": "must be set"} for i in range(4)],
    })
    message, code = envelope_error_body(body)
    assert code == "0304400"
    assert message == ("Validation failed for 4 fields. (/f0: must be set; /f1: must be set;"
                       " /f2: must be set; 1 more) [trace 689]")
    assert envelope_error_body(b"<html>oops</html>") == ("<html>oops</html>", None)
    assert envelope_error_body(b"") == ("API error", None)


async def test_v1_and_2026_calls_share_the_key_s_limit() -> None:
    """10 req/s "across both surfaces": one limiter for both clients of a key."""
    config = QuoSimConfig(api_keys=[KEY], requests_per_second=5)
    async with (
        run_quo_simulator(config=config) as (sim, base_url),
        aiohttp.ClientSession(trace_configs=[slot_trace_config()]) as session,
    ):
        limiter = SlidingWindowLimiter(5, window=1.05)
        quo, hooks = clients(session, base_url, limiter)
        await asyncio.gather(
            *(quo.list_phone_numbers() for _ in range(6)),
            *(hooks.list_all() for _ in range(6)),
        )
        assert sim.rate_limited == 0
        assert all(n <= 5 for n in sim.max_in_any_window.values()), sim.max_in_any_window
