"""A real webhook endpoint for the CRM simulators' delivery tests.

`receiver()` serves one POST route on a free port and yields a `Receiver`: every
delivery lands in its `inbox` as a `Received` (method, URL as delivered, headers, raw
body), answered with the next scripted status of `statuses` (then 200).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Received:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def events(self) -> list[dict[str, Any]]:
        """The body as a JSON array of events (HubSpot batches them)."""
        events = json.loads(self.body)
        assert isinstance(events, list)
        return events

    @property
    def credentials(self) -> tuple[str, str] | None:
        """`(user, password)` of an `Authorization: Basic` header, else None."""
        scheme, _, value = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Basic":
            return None
        user, _, password = base64.b64decode(value).decode().partition(":")
        return user, password


@dataclass
class Receiver:
    """A webhook endpoint: queues what it gets, answers the next scripted statuses."""

    url: str
    inbox: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)
    statuses: list[int] = field(default_factory=list)

    async def next(self) -> Received:
        """The next delivery; fails the test after a 5-second deadline."""
        async with asyncio.timeout(5.0):
            return await self.inbox.get()

    def drained(self) -> list[Received]:
        """Every delivery queued so far, taken off the queue."""
        got = []
        while not self.inbox.empty():
            got.append(self.inbox.get_nowait())
        return got

    def empty(self) -> bool:
        return self.inbox.empty()


@contextlib.asynccontextmanager
async def receiver(
    path: str = "/hook", *, query: str = "", statuses: list[int] | None = None
) -> AsyncIterator[Receiver]:
    """Serve `POST path` on 127.0.0.1; the receiver's URL carries `?query` if given."""
    box = Receiver(url="", statuses=list(statuses or ()))

    async def handle(request: web.Request) -> web.Response:
        box.inbox.put_nowait(Received(request.method, str(request.url),
                                      dict(request.headers), await request.read()))
        return web.Response(status=box.statuses.pop(0) if box.statuses else 200)

    app = web.Application()
    app.router.add_post(path, handle)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box.url = f"http://127.0.0.1:{runner.addresses[0][1]}{path}"
        if query:
            box.url += f"?{query}"
        yield box
    finally:
        await runner.cleanup()
