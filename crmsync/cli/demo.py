"""`crmsync demo`: the whole initial sync against the built-in simulators, no account.

Starts the Quo and CRM simulators on free loopback ports with N seeded people, runs
the tenant's pipeline against them with live progress, serves `/metrics`, and prints
a summary. Everything lives in a temporary directory and on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from rich.console import Console
from rich.table import Table

from crmsync.config import Config, parse_config
from crmsync.daemon.loop import run_async
from crmsync.daemon.pipeline import SyncResult
from crmsync.daemon.resources import open_resources
from crmsync.daemon.sync_once import sync_tenant
from crmsync.errors import EXIT_FAILED, EXIT_OK, UsageError
from crmsync.sim.quo import QuoSim
from crmsync.store import open_store

QUO_KEY = "demo-quo-key"
CRM_KEY = "demo-crm-key"
TENANT = "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=500, metavar="N",
                        help="people seeded in the CRM simulator (default 500)")
    parser.add_argument("--crm", default="attio", help="CRM to simulate (default attio)")
    parser.add_argument("--bulk", action="store_true", help="use Quo's bulk create endpoint")
    parser.add_argument("--keep-running", action="store_true",
                        help="keep the simulators and /metrics up after the sync")


def demo_config(state_dir: Path, quo_url: str, crm_url: str, *, bulk: bool) -> Config:
    text = f"""
[daemon]
state_path = "{state_dir / 'crmsync.db'}"
[quo]
base_url = "{quo_url}"
bulk_create = {'true' if bulk else 'false'}
[[tenants]]
id = "{TENANT}"
crm = "attio"
quo_api_key = "env:DEMO_QUO_API_KEY"
crm_api_key = "env:DEMO_CRM_API_KEY"
crm_base_url = "{crm_url}"
"""
    environ = {"DEMO_QUO_API_KEY": QUO_KEY, "DEMO_CRM_API_KEY": CRM_KEY}
    return parse_config(text, "<demo>", environ)


@contextlib.asynccontextmanager
async def serve_metrics() -> AsyncIterator[str]:
    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest())
        response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
        return response

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()


async def _demo(args: argparse.Namespace) -> int:
    from crmsync.cli.progress import SyncProgress
    from crmsync.sim.attio import AttioSimConfig, run_attio_simulator
    from crmsync.sim.quo import QuoSimConfig, run_quo_simulator

    if args.crm != "attio":
        raise UsageError(f"demo: no simulator for CRM '{args.crm}' yet (available: attio)")
    if args.contacts < 1:
        raise UsageError("demo: --contacts must be at least 1")
    console = Console()
    with tempfile.TemporaryDirectory(prefix="crmsync-demo-") as state_dir:
        async with (
            run_quo_simulator(config=QuoSimConfig(api_keys=[QUO_KEY])) as (quo_sim, quo_url),
            run_attio_simulator(
                config=AttioSimConfig(api_keys=[CRM_KEY], people=args.contacts)
            ) as (_, crm_url),
            serve_metrics() as metrics_url,
        ):
            config = demo_config(Path(state_dir), quo_url, crm_url, bulk=args.bulk)
            console.print(f"Quo simulator  {quo_url}  (10 requests/s per key, strict)")
            console.print(f"Attio simulator {crm_url}  ({args.contacts} seeded people)")
            console.print(f"Metrics        {metrics_url}")
            started = time.monotonic()
            async with (
                open_resources(config) as resources,
                open_store(config.daemon.state_path) as store,
            ):
                with SyncProgress("initial sync", total=args.contacts) as progress:
                    result = await sync_tenant(
                        resources, store, config.tenants[0], on_settled=progress.settled
                    )
                elapsed = time.monotonic() - started
                print_summary(console, result, quo_sim, elapsed, metrics_url)
                if args.keep_running:
                    console.print("Running until Ctrl-C. Try:")
                    console.print(f"  curl -s {metrics_url} | grep crmsync_records_synced")
                    console.print(f"  curl -s {quo_url.removesuffix('/v1')}/_sim/stats")
                    await asyncio.Event().wait()
    return EXIT_OK if result.ok else EXIT_FAILED


def print_summary(
    console: Console, result: SyncResult, quo_sim: QuoSim, elapsed: float, metrics_url: str
) -> None:
    counts = result.run.counts
    requests = quo_sim.stats.total_requests
    table = Table(title=f"crmsync demo: {result.run.state}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for label, value in (
        ("fetched", counts.fetched),
        ("created", counts.created),
        ("updated", counts.updated),
        ("linked", counts.linked),
        ("skipped (unchanged)", counts.unchanged),
        ("failed (dead-lettered)", counts.failed),
        ("phone numbers dropped", result.dropped_phones),
        ("Quo requests", requests),
        ("Quo 429s", quo_sim.rate_limited),
        ("elapsed", f"{elapsed:.1f} s"),
        # Share of what a sliding-window limit of 10/s allows in this time (a first
        # burst of 10, then 10 per second).
        ("rate-limit utilisation", f"{requests / (10 * (1 + math.floor(elapsed))):.2f}"),
    ):
        table.add_row(label, str(value))
    console.print(table)
    console.print(f"Prometheus metrics: {metrics_url}")


def run(args: argparse.Namespace) -> int:
    return run_async(_demo(args))
