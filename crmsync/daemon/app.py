"""`crmsync run`: the daemon.

Resources are stacked in one AsyncExitStack (HTTP session, state store, HTTP server)
and released in reverse. The HTTP port is bound before any tenant starts, so webhooks
registered during setup can be delivered at once. Signal handlers only set events;
this coroutine acts on them: TERM/INT stop the tenants (their checkpoints are
already committed) and close everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from crmsync.config import Config
from crmsync.daemon.health import Health
from crmsync.daemon.http import build_app, serve
from crmsync.daemon.logs import configure_logging
from crmsync.daemon.resources import open_resources
from crmsync.daemon.tenant import TenantRuntime
from crmsync.daemon.webhook_target import WebhookTarget
from crmsync.store import open_store

log = logging.getLogger(__name__)


async def run_daemon(config: Config) -> int:
    configure_logging(config.daemon)
    health = Health()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runtimes: dict[str, TenantRuntime] = {}

    def target(tenant_id: str) -> WebhookTarget | None:
        runtime = runtimes.get(tenant_id)
        return runtime.target if runtime is not None else None

    async with contextlib.AsyncExitStack() as stack:
        resources = await stack.enter_async_context(open_resources(config))
        store = await stack.enter_async_context(open_store(config.daemon.state_path))
        app = build_app(
            targets=target, store=store, config=lambda: config, health=health,
            max_body_bytes=config.http.max_body_bytes,
        )
        port = await stack.enter_async_context(serve(app, config.http.host, config.http.port))
        log.info("listening on http://%s:%d", config.http.host, port)
        async with asyncio.TaskGroup() as tenants:
            tasks = []
            for tenant in config.tenants:
                if not tenant.enabled:
                    continue
                runtime = TenantRuntime(tenant, resources=resources, store=store, health=health)
                runtimes[tenant.id] = runtime
                tasks.append(tenants.create_task(runtime.run(), name=f"tenant:{tenant.id}"))
            await stop.wait()
            log.info("stopping: %d tenants", len(tasks))
            for task in tasks:
                task.cancel()
    log.info("stopped")
    return 0
