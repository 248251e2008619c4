"""Serving a simulator's aiohttp app on a real socket, for tests and the CLI.

`run_app` binds with the daemon's own `serve_app` (port 0 picks a free port), yields the
app and its base URL, and cleans everything up on exit; `run_sim` yields the simulator
stored in the app instead (what every `run_<provider>_simulator` returns).
`serve_forever` prints a banner once the server is bound and then waits until it is
cancelled; `key_line` is the banner's line naming the key a client should use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TypeVar

from aiohttp import web

from crmsync.net.serve import serve_app

S = TypeVar("S")
T = TypeVar("T")

AIOHTTP_SHUTDOWN_TIMEOUT = 60.0  # aiohttp's own default for `AppRunner`


def base_url(host: str, port: int, path: str) -> str:
    """`http://host:port/path`, with an IPv6 literal in brackets as URLs require."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


@contextlib.asynccontextmanager
async def run_app(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    path: str = "",
    shutdown_timeout: float = AIOHTTP_SHUTDOWN_TIMEOUT,
    url_host: str | None = None,
) -> AsyncIterator[tuple[web.Application, str]]:
    """Serve `app`; yield `(app, base_url)` where the URL ends in `path`.

    The URL names `url_host` if given, else the address actually bound: a host name
    such as `localhost` may resolve to several addresses, and only the bound one is
    sure to carry the port that was picked.
    """
    async with serve_app(app, host, port, shutdown_timeout=shutdown_timeout) as bound:
        bound_host, bound_port = bound
        yield app, base_url(bound_host if url_host is None else url_host, bound_port, path)


@contextlib.asynccontextmanager
async def run_sim(
    app: web.Application,
    key: web.AppKey[S],
    host: str,
    port: int,
    *,
    path: str = "",
    shutdown_timeout: float = AIOHTTP_SHUTDOWN_TIMEOUT,
    url_host: str | None = None,
) -> AsyncIterator[tuple[S, str]]:
    """Serve `app` (`run_app`); yield `(app[key], base_url)`: the simulator and its URL."""
    async with run_app(
        app, host, port, path=path, shutdown_timeout=shutdown_timeout, url_host=url_host
    ) as (served, url):
        yield served[key], url


def key_line(label: str, keys: Sequence[str]) -> str:
    """`"API key: <the first key>"`, or `(none)` when the simulator accepts none."""
    return f"{label}: {keys[0] if keys else '(none)'}"


async def serve_forever(
    server: AbstractAsyncContextManager[T], banner: Callable[[T], Iterable[str]]
) -> None:
    """Enter `server`, print `banner(what it yields)` line by line, wait until cancelled."""
    async with server as running:
        for line in banner(running):
            # Flushed per line: the CLI's reader (or a test) waits on the output live.
            print(line, flush=True)
        await asyncio.Event().wait()  # until cancelled (Ctrl-C, or the caller's task)
