"""What the CRM adapter tests share around HTTP.

`recording_trace(seen)` records every request a client session finished (method,
path, body); `all_pages` reads a listing to its end; `served(app)` serves a stand-in
API (odd answers the simulators never give) on a free loopback port; `receiver()` is
a webhook endpoint that records each delivery and answers it with the statuses given,
then 200.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp
from aiohttp import web

from crmsync.adapters.base import CrmAdapter, CrmRecord
from crmsync.net.serve import serve_app


@dataclass
class Seen:
    method: str
    path: str
    body: bytes


def recording_trace(seen: list[Seen]) -> aiohttp.TraceConfig:
    """Record method, path and body of every request the session finished."""

    async def start(
        _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
    ) -> None:
        ctx.seen = Seen(params.method, params.url.path, b"")

    async def chunk(
        _: aiohttp.ClientSession, ctx: SimpleNamespace,
        params: aiohttp.TraceRequestChunkSentParams,
    ) -> None:
        ctx.seen.body += params.chunk

    async def end(
        _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        seen.append(ctx.seen)

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(start)
    trace.on_request_chunk_sent.append(chunk)
    trace.on_request_end.append(end)
    return trace


async def all_pages(adapter: CrmAdapter, page_size: int, cursor: str | None = None
                    ) -> list[list[CrmRecord]]:
    """The records of every page of `people` from `cursor` (None: the full listing)."""
    pages: list[list[CrmRecord]] = []
    while True:
        page = await adapter.fetch_page("people", cursor, page_size)
        pages.append(page.records)
        if page.next_cursor is None:
            return pages
        cursor = page.next_cursor


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free loopback port; yields its root URL (`http://127.0.0.1:PORT`)."""
    async with serve_app(app, "127.0.0.1", 0) as (host, port):
        yield f"http://{host}:{port}"


@dataclass
class Receiver:
    url: str
    received: list[tuple[dict[str, str], bytes]]
    arrived: asyncio.Event  # set by the first delivery


@contextlib.asynccontextmanager
async def receiver(path: str = "/webhooks/acme/crm", answers: Sequence[int] = ()
                   ) -> AsyncIterator[Receiver]:
    """A webhook endpoint at `path` that records each delivery's headers and body and
    answers the deliveries with `answers` in turn, then 200."""
    received: list[tuple[dict[str, str], bytes]] = []
    arrived = asyncio.Event()
    queue = list(answers)

    async def handle(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        arrived.set()
        return web.Response(status=queue.pop(0) if queue else 200)

    app = web.Application()
    app.router.add_post(path, handle)
    async with served(app) as root:
        yield Receiver(root + path, received, arrived)
