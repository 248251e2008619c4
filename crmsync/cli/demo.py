"""`crmsync demo`: the daemon against the built-in simulators, no account, no network.

Starts the Quo and CRM simulators on free loopback ports with N seeded people and runs
the daemon (`crmsync run`'s `Daemon`, with its HTTP listener on a free loopback port)
against them: webhook subscriptions, the initial sync with live progress, then live
sync. Prints a summary and where `/metrics` is, then stops the daemon gracefully —
or, with `--keep-running`, stays live and prints curl lines that make the simulators
send signed webhooks. With `--metakocka` a Metakocka simulator (one company, seeded
partners and sales orders) joins, linked both ways (`[tenants.metakocka]`, see
`metakocka_config_text`): after the initial sync the demo waits, bounded, until every
CRM person is paired with a partner and every partner on a sales order was imported
(a CRM person, then a Quo contact), and the summary adds the Metakocka figures.
Ctrl-C says "stopping… (Ctrl-C again to force)" at once and stops
within the demo's short drain (2 s); during the initial sync that exits 130.

Everything listens on 127.0.0.1; the config and the state stay in a directory
(`./crmsync-demo/`, or `--dir PATH`) so that the read-only commands can inspect them
after the demo, and the demo ends by printing those commands. Their config names the
demo's keys as `env:` references, which read-only commands never resolve: they work
without them, while the simulators those keys belong to are gone. A second demo starts
its directory over (new simulators: the old state would point at contacts that no
longer exist); a directory that is neither empty nor a demo's is refused, and so is one
a running demo holds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shlex
import socket
import sys
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import REGISTRY
from rich.console import Console
from rich.table import Table

from crmsync.config import Config, parse_config
from crmsync.daemon.app import Daemon
from crmsync.daemon.loop import run_async
from crmsync.daemon.signals import STOPPING
from crmsync.daemon.systemd import Notifier
from crmsync.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, UsageError
from crmsync.sim.crms import (
    CRM_SIMULATORS,
    CrmSimEntry,
    CrmSimulator,
    SimOptions,
    UnknownCrmSimulatorError,
    crm_simulator,
)
from crmsync.sim.metakocka import MetakockaSim
from crmsync.sim.quo import QuoSim
from crmsync.store import StateLockedError, hold_state_lock
from crmsync.tenant.pipeline import SyncResult
from crmsync.tenant.runtime import TenantRuntime

QUO_KEY = "demo-quo-key"
CRM_KEY = "demo-crm-key"
TENANT = "demo"
DEFAULT_DIR = "./crmsync-demo"
CONFIG_NAME = "crmsync.toml"
STATE_NAME = "crmsync.db"
#: the first line of a config the demo wrote: what makes a directory the demo's to reuse
MARKER = "# Written by `crmsync demo`"
#: the files of SQLite's state (WAL mode) that a demo started over removes
STATE_SUFFIXES = ("", "-wal", "-shm", "-journal")
#: how long the demo waits for the webhooks its sync caused (Quo's contact.updated
#: echoes of its own writes) to be applied before it prints the summary
SETTLE_SECONDS = 10.0
SETTLE_POLL_SECONDS = 0.1
#: `--metakocka`: the simulator's one company, its seeded data and the link's settings
MK_COMPANY = "16"
MK_KEY = "demo-mk-key"
MK_PARTNERS = 12
MK_DOCUMENTS = 30
MK_DOC_TYPE = "sales_order"
MK_POLL_SECONDS = 5  # the config's minimum `poll_interval`
#: how long the demo waits for the Metakocka link after the initial sync: a base, plus
#: per person what its push costs at Metakocka's pace (up to 3 lookups and an add at
#: 10 calls a second); the demo goes on regardless after it
MK_WAIT_BASE_SECONDS = 60.0
MK_WAIT_PER_PERSON_SECONDS = 0.5
MK_POLL_PROGRESS_SECONDS = 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--contacts", type=int, default=500, metavar="N",
                        help="people seeded in the CRM simulator (default 500)")
    parser.add_argument("--dir", metavar="PATH", default=None,
                        help=f"where the demo's config and state stay, to inspect afterwards "
                             f"(default {DEFAULT_DIR}; a demo's directory is started over, "
                             "another non-empty one is refused)")
    parser.add_argument("--crm", default="attio",
                        help=f"CRM to simulate: {', '.join(CRM_SIMULATORS)} (default attio)")
    parser.add_argument("--bulk", action="store_true", help="use Quo's bulk create endpoint")
    parser.add_argument("--keep-running", action="store_true",
                        help="stay live after the initial sync (webhooks, /metrics) "
                             "until Ctrl-C")
    parser.add_argument("--metakocka", action="store_true",
                        help="also start a Metakocka simulator and sync CRM people with "
                             "its partners both ways")


def free_loopback_port() -> int:
    # The daemon needs its public URL before it binds (its webhooks are registered with
    # it), so the port is chosen first; nothing else on loopback races for it here.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class DemoDir:
    """The directory the demo keeps its config and state in."""

    path: Path
    #: how the printed commands name it: as the user wrote it, so they paste as is
    shown: str

    @classmethod
    def of(cls, given: str | None) -> DemoDir:
        shown = DEFAULT_DIR if given is None else (given.rstrip("/") or "/")
        return cls(Path(shown), shown)

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @property
    def state_path(self) -> Path:
        # Absolute, so the config works from any directory.
        return (self.path / STATE_NAME).absolute()

    def inspect_commands(self) -> list[str]:
        """The read-only commands on what the demo leaves (no API key, no simulator)."""
        config = shlex.quote(f"{self.shown}/{CONFIG_NAME}")
        return [
            f"crmsync status -c {config}",
            f"crmsync mappings --tenant {TENANT} -c {config}",
            f"crmsync errors --tenant {TENANT} -c {config}",
            f"crmsync inbox --tenant {TENANT} -c {config}",
        ]


async def prepare_dir(directory: DemoDir) -> None:
    """Make `directory` ready for a new demo (see the module docstring); `UsageError`
    (exit 2, one line) when it is not the demo's to use."""
    if not await asyncio.to_thread(_is_reusable, directory):
        await asyncio.to_thread(_create, directory)
        return
    try:
        # Held while the old state goes, so a demo still running there is refused
        # rather than losing its database under it.
        async with hold_state_lock(directory.state_path, command="crmsync demo"):
            await asyncio.to_thread(_remove_state, directory)
    except StateLockedError as exc:
        raise UsageError(
            f"demo: {directory.shown} is in use by {exc.holder.describe()} (a demo still "
            "running there?); stop it, or pass --dir with another directory"
        ) from None


def _is_reusable(directory: DemoDir) -> bool:
    """True for an earlier demo's directory; False for a missing or empty one; a
    `UsageError` for anything else."""
    path, shown = directory.path, directory.shown
    if path.exists() and not path.is_dir():
        raise UsageError(f"demo: {shown} exists and is not a directory; pass --dir PATH")
    if not path.is_dir() or not any(path.iterdir()):
        return False
    if not _written_by_demo(directory.config_path):
        raise UsageError(
            f"demo: {shown} is not empty and is not a crmsync demo's directory (no "
            f"{CONFIG_NAME} written by `crmsync demo`); pass --dir with a new or empty "
            "directory"
        )
    return True


def _create(directory: DemoDir) -> None:
    try:
        directory.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"demo: cannot create {directory.shown}: {reason}") from None


def _remove_state(directory: DemoDir) -> None:
    # The lock file stays, as every holder leaves it (store/lock.py says why).
    for suffix in STATE_SUFFIXES:
        Path(f"{directory.state_path}{suffix}").unlink(missing_ok=True)


def _written_by_demo(config_path: Path) -> bool:
    try:
        with config_path.open(encoding="utf-8") as file:
            return file.readline().startswith(MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def _toml_string(value: str) -> str:
    # A JSON string is a TOML basic string, except that TOML also wants DEL escaped.
    return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")


#: the tenant's line for a CRM whose webhooks are signed with a secret set by hand
WEBHOOK_SECRET_LINE = 'crm_webhook_secret = "env:DEMO_CRM_WEBHOOK_SECRET"\n'  # noqa: S105 (a reference)


def metakocka_config_text(mk_url: str) -> str:
    """The tenant's `[tenants.metakocka]` table: both directions, a short poll, the
    partners on sales orders discovered and imported as CRM people."""
    return f"""
[tenants.metakocka]
company_id = "{MK_COMPANY}"
secret_key = "env:DEMO_MK_SECRET_KEY"
base_url = {_toml_string(mk_url)}
direction = "both"
poll_interval = {MK_POLL_SECONDS}
discover_from = ["{MK_DOC_TYPE}"]
auto_import = true
"""


def demo_config_text(
    directory: DemoDir,
    quo_url: str,
    crm_url: str,
    *,
    port: int,
    bulk: bool,
    mk_url: str | None = None,
    crm: str = "attio",
    crm_webhook_secret: bool = False,
) -> str:
    """The config the demo runs with and leaves behind, saying what it is for.
    `crm_webhook_secret`: the CRM signs with a secret set by hand (read from
    `DEMO_CRM_WEBHOOK_SECRET`)."""
    commands = "".join(f"#   {line}\n" for line in directory.inspect_commands())
    return f"""{MARKER}. Its simulators stopped with it, so the read-only
# commands are what works on what it left (they need no API key):
{commands}# The keys below were set only inside the demo: `sync`, `run`, `retry`, `inbox replay`
# and `check-config` say they are missing. `crmsync demo` again starts this directory over.

[daemon]
state_path = {_toml_string(str(directory.state_path))}
log_level = "warning"
shutdown_timeout = 2

[http]
host = "127.0.0.1"
port = {port}
public_url = "http://127.0.0.1:{port}"

[quo]
base_url = {_toml_string(quo_url)}
webhooks_base_url = {_toml_string(quo_url.removesuffix("/v1"))}
bulk_create = {'true' if bulk else 'false'}

[[tenants]]
id = "{TENANT}"
crm = "{crm}"
quo_api_key = "env:DEMO_QUO_API_KEY"
crm_api_key = "env:DEMO_CRM_API_KEY"
crm_base_url = {_toml_string(crm_url)}
""" + (WEBHOOK_SECRET_LINE if crm_webhook_secret else "") + (
        "" if mk_url is None else metakocka_config_text(mk_url))


def write_demo_config(
    directory: DemoDir,
    quo_url: str,
    crm_url: str,
    *,
    port: int,
    bulk: bool,
    mk_url: str | None = None,
    crm: str = "attio",
    crm_webhook_secret: str | None = None,
) -> Config:
    """Write the demo's config into `directory` and load it with the demo's keys."""
    text = demo_config_text(directory, quo_url, crm_url, port=port, bulk=bulk,
                            mk_url=mk_url, crm=crm,
                            crm_webhook_secret=crm_webhook_secret is not None)
    directory.config_path.write_text(text, encoding="utf-8")
    environ = {"DEMO_QUO_API_KEY": QUO_KEY, "DEMO_CRM_API_KEY": CRM_KEY,
               "DEMO_MK_SECRET_KEY": MK_KEY,
               **({} if crm_webhook_secret is None
                  else {"DEMO_CRM_WEBHOOK_SECRET": crm_webhook_secret})}
    return parse_config(text, str(directory.config_path), environ)


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
    from crmsync.sim.metakocka import CompanyConfig, MetakockaSimConfig, run_metakocka_simulator
    from crmsync.sim.quo import QuoSimConfig, run_quo_simulator

    try:
        entry: CrmSimEntry = crm_simulator(args.crm)
    except UnknownCrmSimulatorError as exc:
        raise UsageError(f"demo: {exc}") from None
    if args.contacts < 1:
        raise UsageError("demo: --contacts must be at least 1")
    console = Console()
    directory = DemoDir.of(args.dir)
    await prepare_dir(directory)
    async with (
        run_quo_simulator(config=QuoSimConfig(api_keys=[QUO_KEY])) as (quo_sim, quo_url),
        entry.run(SimOptions(api_keys=[CRM_KEY], people=args.contacts)) as (crm_sim, crm_url),
        AsyncExitStack() as optional,
    ):
        mk: tuple[MetakockaSim, str] | None = None
        if args.metakocka:
            mk = await optional.enter_async_context(run_metakocka_simulator(
                config=MetakockaSimConfig(companies=[CompanyConfig(
                    MK_COMPANY, MK_KEY, partners=MK_PARTNERS, documents=MK_DOCUMENTS)])))
        port = free_loopback_port()
        config = write_demo_config(directory, quo_url, crm_url, port=port, bulk=args.bulk,
                                   mk_url=None if mk is None else mk[1], crm=args.crm,
                                   crm_webhook_secret=entry.webhook_secret)
        base_url = f"http://127.0.0.1:{port}"
        crm_sim.point_webhooks(f"{base_url}/webhooks/{TENANT}/crm")
        metrics_url = f"{base_url}/metrics"
        console.print(f"Quo simulator   {quo_url}  (10 requests/s per key, strict)")
        people = len(crm_sim.record_ids())  # a seed may include deleted people
        console.print(f"{entry.title} simulator {crm_url}  ({people} seeded people)",
                      markup=False, highlight=False)
        if mk is not None:
            mk_sim, mk_url = mk
            on_orders = len(partners_on_orders(mk_sim))
            console.print(f"Metakocka sim   {mk_url}  (company {MK_COMPANY}: {MK_PARTNERS} "
                          f"partners, {on_orders} of them on sales orders)",
                          markup=False, highlight=False)
        console.print(f"crmsync daemon  {base_url}  (webhooks, /status, /healthz)")
        console.print(f"Metrics         {metrics_url}")
        console.print(f"Config, state   {directory.shown}/  (kept after the demo)",
                      markup=False, highlight=False)
        daemon = Daemon(config, config_path=None, notifier=Notifier(None), watchdog=None)
        started = time.monotonic()
        daemon_task = asyncio.create_task(daemon.run(), name="demo:daemon")
        announcer = asyncio.create_task(_say_stopping(daemon), name="demo:stopping")
        with SyncProgress("initial sync", total=people) as progress:
            runtime = await _until_live(daemon, daemon_task, progress.settled)
        elapsed = time.monotonic() - started
        if runtime is not None and not daemon.requests.stop.is_set():
            await _settle_webhooks(quo_sim, runtime)
        mk_figures: MetakockaFigures | None = None
        if mk is not None and runtime is not None and not daemon.requests.stop.is_set():
            mk_figures = await _await_metakocka(
                mk[0], crm_sim, quo_sim, runtime, daemon_task, daemon,
                within=MK_WAIT_BASE_SECONDS + MK_WAIT_PER_PERSON_SECONDS * args.contacts)
        result = None if runtime is None else runtime.initial_result
        # Ctrl-C before the tenant went live: "stopping…" said it; exit 130 below.
        interrupted = result is None and daemon.requests.stop.is_set()
        if result is None and not interrupted:
            why = "; ".join(daemon.health.not_ready_reasons()) or "the daemon stopped"
            console.print(f"the demo tenant did not go live: {why}", markup=False)
        elif result is not None:
            print_summary(console, result, quo_sim, elapsed, metrics_url, mk_figures)
        if args.keep_running and result is not None:
            print_try_lines(console, base_url, quo_url, crm_url, crm_sim)
            if mk is not None and mk_figures is not None:
                print_metakocka_try_lines(console, mk[1], crm_url, mk_figures, crm_sim)
            print_inspect_lines(console, directory, running=True)
            console.print("Running until Ctrl-C.")
        else:
            announcer.cancel()  # the demo's own stop is no news
            daemon.stop()
        code = await daemon_task
        announcer.cancel()
    if not (args.keep_running and result is not None):
        print_inspect_lines(console, directory, running=False)
    if code != EXIT_OK:
        return code
    if interrupted:
        return EXIT_INTERRUPTED
    if mk_figures is not None and mk_figures.failures:
        return EXIT_FAILED
    return EXIT_OK if result is not None and result.ok else EXIT_FAILED


async def _settle_webhooks(
    quo_sim: QuoSim, runtime: TenantRuntime, within: float = SETTLE_SECONDS
) -> None:
    """Let the webhooks the sync caused arrive and be applied before the summary.

    Quo fires `contact.updated` for the daemon's own contact writes too (the simulator
    does, as research says to assume): those echoes are recognised and change nothing,
    but `crmsync inbox` afterwards should show them applied, not pending. Best effort:
    after `within` seconds the demo goes on regardless.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await quo_sim.hooks.http.drain()
    # The inbox's state lives in the store, which no event reports on: poll it briefly.
    while loop.time() < deadline and await runtime.unsettled_events() > 0:  # noqa: ASYNC110
        await asyncio.sleep(SETTLE_POLL_SECONDS)


@dataclass(frozen=True)
class MetakockaFigures:
    """Where the Metakocka link stood when the demo stopped waiting for it."""

    people: int  # CRM people (the seeded ones and the imported ones)
    paired: int  # of them, paired with a partner
    on_orders: int  # partners on sales orders: what discovery finds
    imported: int  # partners imported as CRM people (pairs made from Metakocka)
    created: int  # add_partner calls that succeeded
    updated: int  # update_partner calls that succeeded
    calls: int  # every call the company answered
    failures: int  # failed pushes and pulls (each a dead letter)
    complete: bool  # everything paired and imported (and in Quo) before the deadline
    waited: float  # seconds
    #: an imported partner's `mk_id` and its CRM person, for the --keep-running lines
    example: tuple[str, str] | None


def partners_on_orders(mk_sim: MetakockaSim) -> set[str]:
    """The partners discovery finds: the ones on the company's sales orders."""
    documents = mk_sim.companies[MK_COMPANY].documents
    return {d.partner_mk_id for d in documents if d.doc_type == MK_DOC_TYPE}


def _failed_partners(tenant: str) -> int:
    return sum(
        int(REGISTRY.get_sample_value(
            "crmsync_metakocka_partners_synced_total",
            {"tenant": tenant, "direction": direction, "action": "failed"}) or 0)
        for direction in ("to_metakocka", "from_metakocka")
    )


async def _metakocka_figures(
    mk_sim: MetakockaSim,
    crm: CrmSimulator,
    quo_sim: QuoSim,
    runtime: TenantRuntime,
    *,
    waited: float,
) -> MetakockaFigures:
    links = await runtime.mappings()
    people = set(crm.record_ids())
    paired = {link.crm_record_id for link in links}
    linked = {link.mk_id for link in links}
    in_quo = {c.get("externalId") for c in quo_sim.contacts.contacts.values()}
    on_orders = partners_on_orders(mk_sim)
    imported = [link for link in links if link.direction == "from_metakocka"]
    partners = mk_sim.companies[MK_COMPANY].partners
    example = next(
        ((link.mk_id, link.crm_record_id) for link in imported
         if link.mk_id in partners and partners[link.mk_id].contacts
         and partners[link.mk_id].contacts[0].mk_id == link.mk_contact_id),
        None,
    )
    stats = mk_sim.stats
    return MetakockaFigures(
        people=len(people), paired=len(people & paired), on_orders=len(on_orders),
        imported=len(imported),
        created=stats.count("add_partner", company_id=MK_COMPANY, outcome="0"),
        updated=stats.count("update_partner", company_id=MK_COMPANY, outcome="0"),
        calls=stats.count(company_id=MK_COMPANY), failures=_failed_partners(runtime.id),
        complete=people <= paired and on_orders <= linked and people <= in_quo,
        waited=waited, example=example,
    )


async def _await_metakocka(
    mk_sim: MetakockaSim,
    crm: CrmSimulator,
    quo_sim: QuoSim,
    runtime: TenantRuntime,
    daemon_task: asyncio.Task[int],
    daemon: Daemon,
    *,
    within: float,
) -> MetakockaFigures:
    """Wait (at most `within` seconds, progress shown) until every CRM person is paired
    with a partner and every partner on a sales order was imported and reached Quo.

    The pusher pairs the people the initial sync wrote to Quo; the poller finds the
    partners on sales orders and imports them as CRM people, which the CRM's webhooks
    then take to Quo. A Ctrl-C or the daemon ending stops the wait.
    """
    from crmsync.cli.progress import SyncProgress

    loop = asyncio.get_running_loop()
    started = loop.time()
    figures = await _metakocka_figures(mk_sim, crm, quo_sim, runtime, waited=0.0)
    shown = {"people paired": 0, "partners imported": 0}
    # Each imported partner is also a person to pair: the seeded people, twice the rest.
    total = figures.people - figures.imported + 2 * figures.on_orders
    with SyncProgress("Metakocka", total=total) as progress:
        while True:
            done = {"people paired": min(figures.paired, figures.people),
                    "partners imported": min(figures.imported, figures.on_orders)}
            for action, count in done.items():
                for _ in range(count - shown[action]):
                    progress.settled(action)
                shown[action] = max(shown[action], count)
            if (figures.complete or loop.time() - started >= within or daemon_task.done()
                    or daemon.requests.stop.is_set()):
                return figures
            await asyncio.sleep(MK_POLL_PROGRESS_SECONDS)
            figures = await _metakocka_figures(mk_sim, crm, quo_sim, runtime,
                                               waited=loop.time() - started)


async def _say_stopping(daemon: Daemon) -> None:
    """Acknowledge Ctrl-C at once: the daemon drains (briefly: the demo's
    `shutdown_timeout` is 2 s) before the demo can say anything else."""
    await daemon.requests.stop.wait()
    print(STOPPING, file=sys.stderr, flush=True)


def print_try_lines(
    console: Console, base_url: str, quo_url: str, crm_url: str, crm: CrmSimulator
) -> None:
    """curl lines that make the simulators send signed webhooks to the daemon."""
    person, phone = _person_with_a_phone(crm)
    quo_admin = quo_url.removesuffix("/v1") + "/_sim"
    crm_lines = crm.try_lines(crm_url, CRM_KEY, person)
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
        (crm_lines["notes"].comment, crm_lines["notes"].line),
        (crm_lines["change"].comment, crm_lines["change"].line),
        ("the contact in Quo",
         f"curl -s -H 'authorization: {QUO_KEY}' "
         f"'{quo_url}/contacts?externalIds={person}&maxResults=1'"),
        ("the daemon's view", f"curl -s {base_url}/status"),
        ("metrics", f"curl -s {base_url}/metrics | grep crmsync_records_synced"),
    ):
        console.print(f"  # {comment}\n  {line}", soft_wrap=True, markup=False,
                      highlight=False)


def print_metakocka_try_lines(
    console: Console, mk_url: str, crm_url: str, figures: MetakockaFigures,
    crm: CrmSimulator,
) -> None:
    """How to see an edit made in Metakocka reach the CRM (and Quo)."""
    root = mk_url.removesuffix("/rest/eshop/v1")
    partners = f"{root}/_sim/companies/{MK_COMPANY}/partners"
    console.print("Metakocka (edits made \"in the Metakocka app\" through the simulator's "
                  "/_sim/ routes):", markup=False, highlight=False)
    lines = [("the partners in Metakocka", f"curl -s {partners}")]
    if figures.example is not None:
        mk_id, record_id = figures.example
        edit = json.dumps({"email": "changed.in.metakocka@example.si"})
        lines += [
            (f"edit imported partner {mk_id} -> its CRM person within 2 poll intervals "
             f"({2 * MK_POLL_SECONDS} s), then its Quo contact",
             f"curl -s -X PATCH -H 'content-type: application/json' -d '{edit}' "
             f"{partners}/{mk_id}"),
            (crm.try_lines(crm_url, CRM_KEY, record_id)["person"].comment,
             crm.try_lines(crm_url, CRM_KEY, record_id)["person"].line),
        ]
    for comment, line in lines:
        console.print(f"  # {comment}\n  {line}", soft_wrap=True, markup=False,
                      highlight=False)


def print_inspect_lines(console: Console, directory: DemoDir, *, running: bool) -> None:
    """The commands that read what the demo leaves in `directory`."""
    if running:
        console.print(f"Inspect the state in {directory.shown}/ (now, or after Ctrl-C):",
                      markup=False, highlight=False)
    else:
        console.print(
            f"The demo's config and state stay in {directory.shown}/. Its simulators are "
            "gone, and these read-only commands need neither them nor its keys:",
            markup=False, highlight=False,
        )
    for line in directory.inspect_commands():
        # soft_wrap: a command broken across lines would not paste.
        console.print(f"  {line}", soft_wrap=True, markup=False, highlight=False)
    console.print(f"(`crmsync demo` again starts {directory.shown}/ over; --dir PATH "
                  "keeps another)", markup=False, highlight=False)


def _person_with_a_phone(crm: CrmSimulator) -> tuple[str, str]:
    owners: dict[str, list[str]] = {}
    record_ids = crm.record_ids()
    for record_id in record_ids:
        for phone in crm.person_phones(record_id):
            owners.setdefault(phone, []).append(record_id)
    for phone, ids in sorted(owners.items()):
        if len(ids) == 1:
            return ids[0], phone
    return record_ids[0], "+14155550100"


#: the summary's row of `SyncResult.dropped_phones`, explained under the table
PHONES_LEFT_OUT = "phone numbers left out"


#: the summary's Metakocka rows (the test reads them by these labels)
MK_CREATED = "Metakocka partners created"
MK_UPDATED = "Metakocka partners updated"
MK_IMPORTED = "partners imported to the CRM"
MK_CALLS = "Metakocka calls"
MK_FAILED = "Metakocka failures"


def _metakocka_rows(figures: MetakockaFigures) -> list[tuple[str, object]]:
    return [
        ("CRM people paired", f"{figures.paired}/{figures.people}"),
        (MK_CREATED, figures.created),
        (MK_UPDATED, figures.updated),
        (MK_IMPORTED, f"{figures.imported}/{figures.on_orders}"),
        (MK_CALLS, figures.calls),
        (MK_FAILED, figures.failures),
        ("Metakocka wait", f"{figures.waited:.1f} s"),
    ]


def print_summary(
    console: Console,
    result: SyncResult,
    quo_sim: QuoSim,
    elapsed: float,
    metrics_url: str,
    metakocka: MetakockaFigures | None = None,
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
        (PHONES_LEFT_OUT, result.dropped_phones),
        ("Quo requests", requests),
        ("Quo 429s", quo_sim.rate_limited),
        ("elapsed", f"{elapsed:.1f} s"),
        # Share of what a sliding-window limit of 10/s allows in this time (a first
        # burst of 10, then 10 per second).
        ("rate-limit utilisation", f"{requests / (10 * (1 + math.floor(elapsed))):.2f}"),
        *(() if metakocka is None else _metakocka_rows(metakocka)),
    ):
        table.add_row(label, str(value))
    console.print(table)
    if metakocka is not None:
        console.print(
            "Metakocka, both directions: CRM people -> partners (created, or an existing "
            "partner completed and paired); partners on sales orders -> CRM people "
            f"(imported) -> Quo contacts; edits on either side follow every "
            f"{MK_POLL_SECONDS} s, never echoed back.", markup=False, highlight=False)
        if not metakocka.complete:
            console.print(
                f"Metakocka was not done after {metakocka.waited:.0f} s; the daemon goes "
                "on with it (crmsync errors lists any failure).", markup=False,
                highlight=False)
    if result.dropped_phones:
        console.print(
            f"{PHONES_LEFT_OUT}: values in the CRM's phone fields that are not phone "
            "numbers (e.g. \"call me\", \"ext. 42\"). The contacts were synced without "
            "them; fix them in the CRM and the next pass adds them. "
            "crmsync_phones_dropped_total counts them; the daemon's debug log names each "
            "record.", markup=False, highlight=False,
        )
    console.print(f"Prometheus metrics: {metrics_url}  (up while the demo runs; "
                  "--keep-running keeps it up)", markup=False)


def run(args: argparse.Namespace) -> int:
    return run_async(_demo(args))
