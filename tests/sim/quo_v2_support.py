"""Shared pieces of the tests of the Quo simulator's 2026-03-30 webhook system.

`receiver()` serves a tiny aiohttp app on a free port that records every POST and
answers with a scripted status (`script` first, then `status`); `quo_v2()` serves a
simulator and yields `QuoV2`: the sim, a versioned client for the unprefixed routes
(`api`), a v1 client (`v1`) and the root URL for `/_sim`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from crmsync.sim.quo import QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.testing import SimApi, wait_until

VERSION = {"Quo-Api-Version": "2026-03-30"}
CALLER = "+14155550999"
FAST_RETRIES = (0.0, 0.05, 0.05)


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@dataclass
class Receiver:
    url: str
    received: list[Received] = field(default_factory=list)
    status: int = 200
    script: list[int] = field(default_factory=list)

    def of_type(self, event_type: str) -> list[Received]:
        return [r for r in self.received if r.json.get("type") == event_type]

    async def wait_for(self, count: int, *, within: float = 5.0) -> list[Received]:
        await wait_until(lambda: len(self.received) >= count, within=within,
                         message=f"{count} deliveries")
        return self.received


@contextlib.asynccontextmanager
async def receiver(path: str = "/hook") -> AsyncIterator[Receiver]:
    app = web.Application()
    box: list[Receiver] = []

    async def hook(request: web.Request) -> web.Response:
        target = box[0]
        target.received.append(Received(dict(request.headers), await request.read()))
        status = target.script.pop(0) if target.script else target.status
        return web.Response(status=status, text=f"answered {status}")

    app.router.add_post(path, hook)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    box.append(Receiver(f"http://127.0.0.1:{runner.addresses[0][1]}{path}"))
    try:
        yield box[0]
    finally:
        await runner.cleanup()


@dataclass
class QuoV2:
    sim: QuoSim
    api: SimApi
    v1: SimApi
    root: str

    async def webhook(self, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
        """Create a new-system webhook; its JSON (with `key`)."""
        response = await self.api.post("/webhooks", json={"url": url, "events": events, **extra})
        assert response.status == 201, response.json
        created: dict[str, Any] = response.json["data"]
        return created

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with self.api.session.request(method, self.root + path, json=body) as response:
            assert response.status < 300, await response.text()
            return await response.json()


@contextlib.asynccontextmanager
async def quo_v2(config: QuoSimConfig | None = None) -> AsyncIterator[QuoV2]:
    config = config or QuoSimConfig(
        requests_per_second=10_000, seed=7, webhook_retry_schedule=FAST_RETRIES
    )
    async with (
        run_quo_simulator(config=config) as (sim, base_url),
        aiohttp.ClientSession() as session,
    ):
        root = base_url.removesuffix("/v1")
        yield QuoV2(
            sim, SimApi(session, root, sim.api_key, VERSION),
            SimApi(session, base_url, sim.api_key), root,
        )
