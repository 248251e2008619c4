"""Serving an aiohttp application on a real socket (the daemon's listener, the simulators).

`AppRunner(handle_signals=False)` + `TCPSite`, as aiohttp's docs advise for an embedded
server: whoever owns the process decides when to stop, not aiohttp's signal handlers.
Port 0 picks a free port; the context yields the address actually bound.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web


@contextlib.asynccontextmanager
async def serve_app(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 60.0
) -> AsyncIterator[tuple[str, int]]:
    """Listen on `host:port`; yield the bound `(host, port)`; clean up on exit."""
    runner = web.AppRunner(
        app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield str(bound_host), int(bound_port)
    finally:
        await runner.cleanup()
