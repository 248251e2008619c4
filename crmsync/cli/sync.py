"""`crmsync sync --tenant ID [--full]`: one tenant's pipeline until its backlog is drained.

The pass runs in the foreground through the tenant's own runtime (`sync_once`), so its
supervision and state bookkeeping are the daemon's: a crash restarts the pass from the
checkpoint, and the tenant's state says how it ended. Its restart budget has no time
window (5 restarts in all), so a CRM that never answers ends the command with exit 1
and one line, instead of restarts forever.

It writes the state, so it holds the state lock while it runs: beside the daemon (or
another writer) it is refused with one line, exit 2.

Ctrl-C or SIGTERM stops it the way the daemon stops a tenant: "stopping… (Ctrl-C again
to force)" at once, no new page is fetched, the records already fetched settle and
their pages commit (up to `daemon.shutdown_timeout`; a page fetch still in progress is
abandoned), then the pass is cancelled: its run is closed as interrupted with the
counts of what it wrote, the tenant is `stopped`, and the command exits 130. A second
Ctrl-C skips what is left of the wait.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable

from crmsync.adapters.errors import CrmAuthError
from crmsync.cli.common import require_tenant
from crmsync.config import TenantConfig, load_config
from crmsync.daemon.leases import command_lease
from crmsync.daemon.loop import run_async
from crmsync.daemon.signals import FOREGROUND, STOPPING, SignalRequests
from crmsync.errors import EXIT_FAILED, EXIT_OK, CommandInterruptedError, CrmsyncError
from crmsync.quo.errors import QuoAuthError
from crmsync.store import Store, SyncRun, open_store
from crmsync.tenant.pipeline import SyncResult
from crmsync.tenant.resources import Resources, open_resources
from crmsync.tenant.runtime import TenantRuntime
from crmsync.tenant.supervisor import RestartBudgetSpentError
from crmsync.web.health import Health

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, metavar="ID", help="tenant id")
    parser.add_argument(
        "--full", action="store_true", help="force a full pass (unchanged records are skipped)"
    )


async def sync_tenant(
    resources: Resources,
    store: Store,
    tenant: TenantConfig,
    *,
    full: bool = False,
    on_settled: Callable[[str], None] | None = None,
) -> SyncResult:
    """One pass of `tenant` in the foreground; raises a one-line `CrmsyncError` when it
    cannot finish (rejected credentials, a spent restart budget)."""
    runtime = TenantRuntime(tenant, resources=resources, store=store, health=Health())
    if on_settled is not None:
        runtime.progress.observe(on_settled)
    return await _sync_once(runtime, full=full)


async def _sync_once(runtime: TenantRuntime, *, full: bool) -> SyncResult:
    """`runtime.sync_once`, with what ends it early as one-line errors."""
    try:
        return await runtime.sync_once(full=full)
    except QuoAuthError as exc:
        raise CrmsyncError(
            f"{runtime.id}: Quo rejected the API key ({exc}); check quo_api_key"
            " (a new key takes about 30 s to become active)"
        ) from None
    except CrmAuthError as exc:
        raise CrmsyncError(
            f"{runtime.id}: the CRM rejected the API key ({exc}); check crm_api_key"
        ) from None
    except RestartBudgetSpentError as exc:
        raise CrmsyncError(f"{runtime.id}: sync failed: {exc}") from None


async def sync_until_stopped(
    runtime: TenantRuntime, *, full: bool, stop_timeout: float
) -> SyncResult | None:
    """The pass, until it ends or a TERM/INT stops it; None when it was stopped.

    A stop drains like the daemon's (see the module docstring) for up to
    `stop_timeout` seconds, or until a second Ctrl-C, and then cancels the pass. If the
    pass ends by itself meanwhile, its result stands.
    """
    loop = asyncio.get_running_loop()
    requests = SignalRequests()
    requests.install(loop, FOREGROUND)
    work = asyncio.create_task(_sync_once(runtime, full=full), name=f"sync:{runtime.id}")
    try:
        stop = asyncio.ensure_future(requests.stop.wait())
        try:
            await asyncio.wait({work, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not work.done():
            print(STOPPING, file=sys.stderr, flush=True)
            why = await runtime.drain(
                work, reason=requests.stop_signal or "stop", deadline=loop.time() + stop_timeout,
                force=requests.force, wait_for_fetch=False,
            )
            if not work.done():
                log.info("stopping the pass (%s)", why)
                work.cancel(why)
            await asyncio.wait({work})
    finally:
        requests.remove()
        if not work.done():  # we were cancelled ourselves: never leave the pass running
            work.cancel()
            await asyncio.wait({work})
    if work.cancelled():
        return None
    return work.result()


def summary(tenant_id: str, run: SyncRun, *, state: str | None = None) -> str:
    counts = run.counts
    return (
        f"{tenant_id}: {state or run.state}: fetched {counts.fetched}, created "
        f"{counts.created}, updated {counts.updated}, linked {counts.linked}, unchanged "
        f"{counts.unchanged}, failed {counts.failed}"
    )


async def _estimate(store: Store, tenant_id: str) -> int | None:
    """How many records a pass may settle, or None when nothing says.

    Attio reports no total, so the mappings of a complete initial sync are the best
    estimate. Before one completed there is none: the mappings are what an interrupted
    pass already wrote, and the pass resumes after them (300 settled of "70" was the
    result).
    """
    row = await store.tenants.get(tenant_id)
    if row is None or row.initial_sync_completed_at is None:
        return None
    return await store.mappings.count(tenant_id) or None


async def _sync(args: argparse.Namespace) -> int:
    from crmsync.cli.progress import SyncProgress

    config = load_config(args.config)
    tenant = require_tenant(config, args.tenant)
    async with (
        open_resources(config) as resources,
        open_store(config.daemon.state_location, command=f"crmsync sync --tenant {tenant.id}",
                   tenants=[tenant.id]) as store,
        command_lease(store, config, tenant, command="crmsync sync"),
    ):
        estimate = await _estimate(store, tenant.id)
        runtime = TenantRuntime(tenant, resources=resources, store=store, health=Health())
        with SyncProgress(f"sync {tenant.id}", total=estimate, estimated=True) as progress:
            runtime.progress.observe(progress.settled)
            result = await sync_until_stopped(
                runtime, full=args.full, stop_timeout=config.daemon.shutdown_timeout
            )
        if result is None:
            run = await store.runs.latest(tenant.id)
            if run is not None:
                print(summary(tenant.id, run, state="interrupted"))
            raise CommandInterruptedError(
                f"{tenant.id}: sync interrupted; what was written is counted, and the next"
                f" `crmsync sync --tenant {tenant.id}` resumes after the last committed page"
            )
    print(
        summary(tenant.id, result.run) + f"; phones dropped {result.dropped_phones}"
        + (f"; bulk contacts created singly: {len(result.bulk_missing)}"
           if result.bulk_missing else "")
    )
    if not result.ok:
        print(f"crmsync: sync failed: {result.run.error}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    return run_async(_sync(args))
