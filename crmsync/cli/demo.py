"""`crmsync demo`: the daemon against the built-in simulators, no account, no network.

Starts the Quo and CRM simulators on free loopback ports with N seeded people and runs
the daemon (`crmsync run`'s `Daemon`, with its HTTP listener on a free loopback port)
against them: webhook subscriptions, the initial sync with live progress, then live
sync. Prints a summary and where `/metrics` is, then stops the daemon gracefully —
or, with `--keep-running`, stays live and prints curl lines that make the simulators
send signed webhooks. Everything lives in a temporary directory and on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from crmsync.config import Config, parse_config
from crmsync.daemon.app import Daemon
from crmsync.daemon.loop import run_async
from crmsync.daemon.systemd import Notifier
from crmsync.errors import EXIT_FAILED, EXIT_OK, UsageError
from crmsync.sim.attio import AttioSim
from crmsync.sim.quo import QuoSim
from crmsync.tenant.pipeline import SyncResult
from crmsync.tenant.runtime import TenantRuntime

QUO_KEY = "demo-quo-key"
CRM_KEY = "demo-crm-key"
TENANT = "demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=500, metavar="N",
                        help="people seeded in the CRM simulator (default 500)")
    parser.add_argument("--crm", default="attio", help="CRM to simulate (default attio)")
    parser.add_argument("--bulk", action="store_true", help="use Quo's bulk create endpoint")
    parser.add_argument("--keep-running", action="store_true",
                        help="stay live after the initial sync (webhooks, /metrics) "
                             "until Ctrl-C")


def free_loopback_port() -> int:
    # The daemon needs its public URL before it binds (its webhooks are registered with
    # it), so the port is chosen first; nothing else on loopback races for it here.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def demo_config(
    state_dir: Path, quo_url: str, crm_url: str, *, port: int, bulk: bool
) -> Config:
    text = f"""
[daemon]
state_path = "{state_dir / 'crmsync.db'}"
log_level = "warning"
shutdown_timeout = 10
[http]
host = "127.0.0.1"
port = {port}
public_url = "http://127.0.0.1:{port}"
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


async def _until_live(
    daemon: Daemon, daemon_task: asyncio.Task[int], on_settled: Callable[[str], None]
) -> TenantRuntime | None:
    """The tenant once it is live; None if the daemon ended or the tenant gave up."""
    launched = asyncio.ensure_future(daemon.launched.wait())
    await asyncio.wait({launched, daemon_task}, return_when=asyncio.FIRST_COMPLETED)
    launched.cancel()
    runtime = daemon.runtime(TENANT)
    if runtime is None:
        return None
    runtime.progress.observe(on_settled)
    live = asyncio.ensure_future(runtime.started.wait())
    gave_up = asyncio.ensure_future(runtime.halted.wait())
    try:
        await asyncio.wait({live, gave_up, daemon_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        live.cancel()
        gave_up.cancel()
    return runtime if runtime.started.is_set() else None


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
            ) as (attio_sim, crm_url),
        ):
            port = free_loopback_port()
            config = demo_config(Path(state_dir), quo_url, crm_url, port=port, bulk=args.bulk)
            base_url = f"http://127.0.0.1:{port}"
            metrics_url = f"{base_url}/metrics"
            console.print(f"Quo simulator   {quo_url}  (10 requests/s per key, strict)")
            console.print(f"Attio simulator {crm_url}  ({args.contacts} seeded people)")
            console.print(f"crmsync daemon  {base_url}  (webhooks, /status, /healthz)")
            console.print(f"Metrics         {metrics_url}")
            daemon = Daemon(config, config_path=None, notifier=Notifier(None), watchdog=None)
            started = time.monotonic()
            daemon_task = asyncio.create_task(daemon.run(), name="demo:daemon")
            with SyncProgress("initial sync", total=args.contacts) as progress:
                runtime = await _until_live(daemon, daemon_task, progress.settled)
            elapsed = time.monotonic() - started
            result = None if runtime is None else runtime.initial_result
            if result is None:
                why = "; ".join(daemon.health.not_ready_reasons()) or "the daemon stopped"
                console.print(f"the demo tenant did not go live: {why}", markup=False)
            else:
                print_summary(console, result, quo_sim, elapsed, metrics_url)
            if args.keep_running and result is not None:
                print_try_lines(console, base_url, quo_url, crm_url, attio_sim)
                console.print("Running until Ctrl-C.")
            else:
                daemon.stop()
            code = await daemon_task
    if code != EXIT_OK:
        return code
    return EXIT_OK if result is not None and result.ok else EXIT_FAILED


def print_try_lines(
    console: Console, base_url: str, quo_url: str, crm_url: str, attio: AttioSim
) -> None:
    """curl lines that make the simulators send signed webhooks to the daemon."""
    person, phone = _person_with_a_phone(attio)
    quo_admin = quo_url.removesuffix("/v1") + "/_sim"
    crm_admin = crm_url.removesuffix("/v2") + "/_sim"
    json_header = "-H 'content-type: application/json'"
    message = json.dumps({"participant": phone, "text": "Hi, is my order on its way?"})
    call = json.dumps({"participant": phone, "duration": 95,
                       "summary": ["Asked about the Q3 renewal."]})
    console.print("Try (each makes a simulator send a signed webhook to the daemon):")
    for comment, line in (
        ("an SMS from a CRM person -> a note on that person",
         f"curl -s -X POST {json_header} -d '{message}' {quo_admin}/simulate/message"),
        ("a call with a summary -> one call note",
         f"curl -s -X POST {json_header} -d '{call}' {quo_admin}/simulate/call"),
        ("the notes in the CRM",
         f"curl -s -H 'authorization: Bearer {CRM_KEY}' "
         f"'{crm_url}/notes?parent_object=people&parent_record_id={person}'"),
        ("a CRM change -> the Quo contact is updated",
         f"curl -s -X PATCH {json_header} -d '{{\"job_title\": \"CTO\"}}' "
         f"{crm_admin}/people/{person}"),
        ("the contact in Quo",
         f"curl -s -H 'authorization: {QUO_KEY}' "
         f"'{quo_url}/contacts?externalIds={person}&maxResults=1'"),
        ("the daemon's view", f"curl -s {base_url}/status"),
        ("metrics", f"curl -s {base_url}/metrics | grep crmsync_records_synced"),
    ):
        console.print(f"  # {comment}\n  {line}", soft_wrap=True, markup=False,
                      highlight=False)


def _person_with_a_phone(attio: AttioSim) -> tuple[str, str]:
    owners: dict[str, list[str]] = {}
    for record in attio.people:
        for phone in attio.person_phones(record.record_id):
            owners.setdefault(phone, []).append(record.record_id)
    for phone, ids in sorted(owners.items()):
        if len(ids) == 1:
            return ids[0], phone
    return next(iter(attio.people)).record_id, "+14155550100"


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
    console.print(f"Prometheus metrics: {metrics_url}  (up while the demo runs; "
                  "--keep-running keeps it up)", markup=False)


def run(args: argparse.Namespace) -> int:
    return run_async(_demo(args))
