"""`crmsync sync --tenant ID [--full]`: one tenant's pipeline until its backlog is drained.

The pass runs in the foreground through the tenant's own runtime (`sync_once`), so its
supervision and state bookkeeping are the daemon's: a crash restarts the pass from the
checkpoint within the tenant's budget, and the tenant's state says how it ended.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from crmsync.adapters.errors import CrmAuthError
from crmsync.cli.common import require_tenant
from crmsync.config import TenantConfig, load_config
from crmsync.daemon.loop import run_async
from crmsync.errors import EXIT_FAILED, EXIT_OK, CrmsyncError
from crmsync.quo.errors import QuoAuthError
from crmsync.store import Store, open_store
from crmsync.tenant.pipeline import SyncResult
from crmsync.tenant.resources import Resources, open_resources
from crmsync.tenant.runtime import TenantRuntime
from crmsync.tenant.supervisor import RestartBudgetSpentError
from crmsync.web.health import Health


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
    try:
        return await runtime.sync_once(full=full)
    except QuoAuthError as exc:
        raise CrmsyncError(
            f"{tenant.id}: Quo rejected the API key ({exc}); check quo_api_key"
            " (a new key takes about 30 s to become active)"
        ) from None
    except CrmAuthError as exc:
        raise CrmsyncError(
            f"{tenant.id}: the CRM rejected the API key ({exc}); check crm_api_key"
        ) from None
    except RestartBudgetSpentError as exc:
        raise CrmsyncError(f"{tenant.id}: sync failed: {exc}") from None


async def _sync(args: argparse.Namespace) -> int:
    from crmsync.cli.progress import SyncProgress

    config = load_config(args.config)
    tenant = require_tenant(config, args.tenant)
    async with open_resources(config) as resources, open_store(config.daemon.state_path) as store:
        # Attio reports no total: an earlier pass's mapping count is the best estimate.
        estimate = await store.mappings.count(tenant.id) or None
        with SyncProgress(f"sync {tenant.id}", total=estimate) as progress:
            result = await sync_tenant(
                resources, store, tenant, full=args.full, on_settled=progress.settled
            )
    counts = result.run.counts
    print(
        f"{tenant.id}: {result.run.state}: fetched {counts.fetched}, created {counts.created}, "
        f"updated {counts.updated}, linked {counts.linked}, unchanged {counts.unchanged}, "
        f"failed {counts.failed}; phones dropped {result.dropped_phones}"
        + (f"; bulk contacts created singly: {len(result.bulk_missing)}"
           if result.bulk_missing else "")
    )
    if not result.ok:
        print(f"crmsync: sync failed: {result.run.error}", file=sys.stderr)
    return EXIT_OK if result.ok else EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    return run_async(_sync(args))
