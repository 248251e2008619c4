"""The simulators' shared kit (`crmsync.sim._kit`): window, server harness, delivery.

The window rules are checked exactly with explicit times; the harness and the delivery
client run against real aiohttp servers on 127.0.0.1, and wait on events, not sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from crmsync.sim._kit.delivery import PostOutcome, WebhookClient, is_success
from crmsync.sim._kit.http import json_response, route_template
from crmsync.sim._kit.server import base_url, run_app, serve_forever
from crmsync.sim._kit.window import ArrivalWindow, RateWindow
from crmsync.sim.quo.testing import wait_until

# -- window ----------------------------------------------------------------------------


def test_arrival_window_excludes_an_arrival_exactly_one_window_old() -> None:
    window = ArrivalWindow(1.0)
    for t in (10.0, 10.5):
        window.slide(t)
        window.add(t)
    assert window.slide(10.999) == 2
    assert window.slide(11.0) == 1  # (10.0, 11.0] no longer holds 10.0
    assert window.slide(11.5) == 0
    window.add(11.5)
    window.clear()
    assert len(window) == 0


def test_arrival_window_record_slides_then_counts_the_new_arrival() -> None:
    window = ArrivalWindow(1.0)
    assert [window.record(t) for t in (0.0, 0.5, 0.9, 1.0, 2.5)] == [1, 2, 3, 3, 1]


def test_seconds_until_fewer_than_counts_from_the_deciding_arrival() -> None:
    window = ArrivalWindow(1.0)
    for t in (0.0, 0.25, 0.5):
        window.add(t)
    window.slide(0.75)
    assert window.seconds_until_fewer_than(4, 0.75) == 0.0
    assert window.seconds_until_fewer_than(3, 0.75) == pytest.approx(0.25)  # 0.0 leaves
    assert window.seconds_until_fewer_than(2, 0.75) == pytest.approx(0.5)  # 0.25 leaves


def test_rate_window_counting_rejections_keeps_a_flooding_client_out() -> None:
    window = RateWindow(2, 1.0, count_rejected=True)
    decisions = [window.arrive(t) for t in (0.0, 0.5, 0.9, 1.0, 1.5, 1.9, 2.95)]
    # 0.9 is rejected but counted, so at 1.0 the window (0.0, 1.0] still holds 0.5 and
    # 0.9; every rejection prolongs the lockout until a full window passes without one.
    assert decisions == [True, True, False, False, False, False, True]


def test_rate_window_not_counting_rejections_admits_once_the_oldest_leaves() -> None:
    window = RateWindow(2, 1.0, count_rejected=False)
    decisions = [window.arrive(t) for t in (0.0, 0.5, 0.9, 0.999, 1.0, 1.2, 1.5)]
    # At 1.0 the arrival at 0.0 is exactly one window old: out, so 1.0 is admitted.
    assert decisions == [True, True, False, False, True, False, True]
    assert len(window.counted) == 2  # only admissions occupy the window


def test_rate_window_reports_the_wait_until_admission() -> None:
    window = RateWindow(2, 1.0, count_rejected=False)
    assert window.arrive(0.25) and window.arrive(0.5)
    assert not window.arrive(0.75)
    assert window.seconds_until_admission(0.75) == pytest.approx(0.5)
    assert window.arrive(1.25)  # 0.25 + 1.0: the wait was exact
    assert not window.arrive(1.3)


def test_forced_rejection_occupies_a_slot_only_when_rejections_count() -> None:
    strict = RateWindow(1, 1.0, count_rejected=True)
    assert strict.arrive(0.0, force_reject=True) is False
    assert strict.arrive(0.1) is False
    lenient = RateWindow(1, 1.0, count_rejected=False)
    assert lenient.arrive(0.0, force_reject=True) is False
    assert lenient.arrive(0.1) is True


# -- server harness --------------------------------------------------------------------


def _hello_app(cleaned_up: asyncio.Event) -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return json_response({"route": route_template(request, "<none>")})

    async def on_cleanup(app: web.Application) -> None:
        cleaned_up.set()

    app = web.Application()
    app.router.add_get("/api/items/{id}", hello)
    app.on_cleanup.append(on_cleanup)
    return app


def test_base_url_brackets_ipv6_literals() -> None:
    assert base_url("127.0.0.1", 8080, "/v1") == "http://127.0.0.1:8080/v1"
    assert base_url("::1", 8080, "/v2") == "http://[::1]:8080/v2"
    assert base_url("localhost", 1, "") == "http://localhost:1"


async def test_run_app_binds_a_free_port_and_cleans_up() -> None:
    cleaned_up = asyncio.Event()
    app = _hello_app(cleaned_up)
    async with aiohttp.ClientSession() as http:
        async with run_app(app, "127.0.0.1", 0, path="/api", shutdown_timeout=1.0) as (
            served,
            url,
        ):
            assert served is app
            assert url.startswith("http://127.0.0.1:") and url.endswith("/api")
            assert int(url.split(":")[2].split("/")[0]) > 0
            async with http.get(f"{url}/items/7") as response:
                assert response.status == 200
                assert await response.json() == {"route": "/api/items/{id}"}
            async with http.get(f"{url}/nowhere") as response:
                assert response.status == 404
        assert cleaned_up.is_set()
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(f"{url}/items/7"):
                pass


async def test_run_app_names_the_requested_host_when_asked() -> None:
    async with run_app(
        _hello_app(asyncio.Event()), "127.0.0.1", 0, path="/v1", url_host="localhost"
    ) as (_, url):
        assert url.startswith("http://localhost:") and url.endswith("/v1")


async def test_serve_forever_prints_the_banner_and_stops_on_cancel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cleaned_up = asyncio.Event()
    bound = asyncio.Event()

    def banner(running: tuple[web.Application, str]) -> list[str]:
        bound.set()
        return ["serving", f"at {running[1]}"]

    server = run_app(_hello_app(cleaned_up), "127.0.0.1", 0, path="/x", shutdown_timeout=1.0)
    task = asyncio.create_task(serve_forever(server, banner))
    async with asyncio.timeout(5):
        await bound.wait()
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "serving" and lines[1].startswith("at http://127.0.0.1:")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned_up.is_set()


# -- delivery --------------------------------------------------------------------------


@dataclass
class Receiver:
    """A webhook endpoint that answers only once `release` is set."""

    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    bodies: list[bytes] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.arrived.set()
        await self.release.wait()
        return web.Response(status=202)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hook = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    async with run_app(app, "127.0.0.1", 0, path="/hook", shutdown_timeout=1.0) as (_, url):
        hook.url = url
        try:
            yield hook
        finally:
            hook.release.set()  # let a handler the client abandoned finish


def test_is_success_means_2xx() -> None:
    assert [is_success(s) for s in (None, 199, 200, 299, 300, 500)] == [
        False, False, True, True, False, False,
    ]


async def test_post_returns_the_status_or_the_transport_error(receiver: Receiver) -> None:
    client = WebhookClient(timeout=5.0)
    try:
        receiver.release.set()
        outcome = await client.post(receiver.url, b'{"a":1}', {"X-Test": "1"})
        assert outcome == PostOutcome(202) and outcome.ok
        assert receiver.bodies == [b'{"a":1}']
        unreachable = await client.post("http://127.0.0.1:1/hook", b"{}", {})
        assert unreachable.status is None and not unreachable.ok
        assert unreachable.error is not None and "Error" in unreachable.error
    finally:
        await client.close()


async def test_post_that_times_out_is_an_error_outcome(receiver: Receiver) -> None:
    client = WebhookClient(timeout=0.2)
    try:
        outcome = await client.post(receiver.url, b"{}", {})
    finally:
        await client.close()
    assert outcome.status is None
    assert outcome.error is not None and outcome.error.startswith(
        ("TimeoutError", "ServerTimeoutError", "ConnectionTimeoutError")
    )


async def test_close_lets_in_flight_work_finish_within_the_grace(receiver: Receiver) -> None:
    client = WebhookClient(timeout=5.0, grace=10.0)
    outcomes: list[PostOutcome] = []

    async def deliver() -> None:
        outcomes.append(await client.post(receiver.url, b"{}", {}))

    client.spawn(deliver(), name="kit-test-delivery")
    async with asyncio.timeout(5):
        await receiver.arrived.wait()
    closing = asyncio.create_task(client.close())
    await wait_until(lambda: client.closing, message="close() began")
    receiver.release.set()  # only now: the answer comes while close() is waiting
    async with asyncio.timeout(5):  # far below the 10 s grace: close waited for the answer
        await closing
    assert outcomes == [PostOutcome(202)]


async def test_close_cancels_work_still_running_after_the_grace(receiver: Receiver) -> None:
    client = WebhookClient(timeout=30.0, grace=0.1)
    cancelled = asyncio.Event()

    async def deliver() -> None:
        try:
            await client.post(receiver.url, b"{}", {})
        except asyncio.CancelledError:
            cancelled.set()
            raise

    client.spawn(deliver(), name="kit-test-stuck-delivery")
    async with asyncio.timeout(5):
        await receiver.arrived.wait()
        await client.close()
    assert cancelled.is_set()
    await client.drain()  # nothing left to wait for


async def test_pause_wakes_when_close_begins() -> None:
    client = WebhookClient(timeout=1.0, grace=30.0)
    pausing = asyncio.Event()
    woke = asyncio.Event()

    async def backoff() -> None:
        pausing.set()
        await client.pause(60.0)
        woke.set()

    client.spawn(backoff(), name="kit-test-backoff")
    async with asyncio.timeout(5):  # neither the 60 s pause nor the 30 s grace ran out
        await pausing.wait()
        await client.close()
    assert woke.is_set()


async def test_drain_waits_for_work_started_while_draining() -> None:
    client = WebhookClient(timeout=1.0)
    done: list[str] = []

    async def second() -> None:
        done.append("second")

    async def first() -> None:
        client.spawn(second(), name="kit-test-second")
        done.append("first")

    client.spawn(first(), name="kit-test-first")
    async with asyncio.timeout(5):
        await client.drain()
    assert done == ["first", "second"]
    await client.close()
