"""`crmsync metakocka push|pull|unsynced|mappings --tenant ID …`: the §9 Metakocka
operations from the shell.

    $ crmsync metakocka pull --tenant acme 1001 1002 99999
    $ crmsync metakocka push --tenant acme --json rec_1 rec_2
    $ crmsync metakocka unsynced --tenant acme
    $ crmsync metakocka mappings --tenant acme [--crm-record-id ID] [--mk-id ID]

`push` (CRM person → Metakocka partner) and `pull` (partner → CRM person, importing
unpaired ones) write the state, so where they run depends on who holds it:

* the daemon (`crmsync run`) holds the state lock → the command asks it, through its
  own management API (`POST /api/tenants/{t}/metakocka/push|pull` on `http.host`:
  `http.port` with `http.admin_token`, at most 1000 ids a request): the daemon's
  limiters and its one writer stay the only ones. Without `http.admin_token` it is
  refused with one line (exit 2);
* nobody holds it → the command runs the operation itself: it opens the state
  read-write (holding the lock meanwhile, like `crmsync sync`) and builds the tenant's
  runtime from the config as the daemon does (people a pull imports reach Quo with the
  next pass: the daemon's, or `crmsync sync`);
* another writer holds it (`crmsync sync`, …) → refused with one line naming it.

`unsynced` and `mappings` only read the state: they read it directly (read-only, safe
beside the daemon; the API keys need not be at hand).

The output is a table, or with `--json` exactly the management API's JSON
(`web/metakocka_rows.py`). Exit 0 when every id succeeded, 1 when any failed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Final, Literal

import aiohttp
import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crmsync.cli.common import open_state, require_tenant
from crmsync.config import Config, TenantConfig, load_config
from crmsync.daemon.loop import run_async
from crmsync.errors import EXIT_FAILED, EXIT_OK, CrmsyncError, UsageError
from crmsync.store import StateLockedError, lock_holder, open_store
from crmsync.tenant.resources import open_resources
from crmsync.tenant.runtime import TenantRuntime
from crmsync.web.api import MAX_IDS
from crmsync.web.health import Health
from crmsync.web.metakocka_rows import (
    MappingsAnswer,
    MkReport,
    MkResult,
    UnsyncedAnswer,
    read_mappings,
)

Write = Literal["push", "pull"]
#: the body field of each write (INTERFACE §9)
ID_FIELDS: Final[dict[str, str]] = {"push": "crmRecordIds", "pull": "mkIds"}
#: a push or pull of 1000 ids may take minutes at Metakocka's and the CRM's limits
CALL_TIMEOUT: Final = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=3600)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    helps = {
        "push": "CRM people -> Metakocka partners now (CRM record ids)",
        "pull": "Metakocka partners -> CRM people now (Metakocka partner ids)",
        "unsynced": "list partners found on documents and not paired with a CRM person",
        "mappings": "list the CRM person <-> Metakocka partner pairs",
    }
    for name, help_text in helps.items():
        action = actions.add_parser(name, help=help_text)
        action.add_argument("-c", "--config", metavar="PATH", default=argparse.SUPPRESS,
                            help="config file (default ./crmsync.toml, then $CRMSYNC_CONFIG)")
        action.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                            help="show tracebacks")
        action.add_argument("--tenant", required=True, metavar="ID", help="tenant id")
        action.add_argument("--json", action="store_true",
                            help="print the management API's JSON instead of a table")
        if name in ID_FIELDS:
            action.add_argument("ids", nargs="+", metavar="ID",
                                help="CRM record ids" if name == "push"
                                else "Metakocka partner ids (mk_id)")
        if name == "mappings":
            action.add_argument("--crm-record-id", metavar="ID", help="only this person's")
            action.add_argument("--mk-id", metavar="ID", help="only this partner's")


def _linked(config: Config, tenant_id: str) -> TenantConfig:
    tenant = require_tenant(config, tenant_id)
    if tenant.metakocka is None:
        raise UsageError(f"{tenant.id}: no Metakocka link ([tenants.metakocka] is not"
                         " configured for this tenant)")
    return tenant


# -- push / pull ---------------------------------------------------------------------------


async def write(config: Config, tenant: TenantConfig, action: Write,
                ids: Sequence[str]) -> MkReport:
    """Push or pull `ids`: through the daemon when it holds the state, else here."""
    ids = list(dict.fromkeys(ids))
    holder = await lock_holder(config.daemon.state_location)
    if holder is not None and holder.is_daemon:
        return await through_daemon(config, tenant, action, ids)
    command = f"crmsync metakocka {action} --tenant {tenant.id}"
    try:
        async with (
            open_store(config.daemon.state_location, command=command,
                       tenants=[tenant.id]) as store,
            open_resources(config) as resources,
        ):
            await store.tenants.upsert(tenant.id, tenant.crm)
            runtime = TenantRuntime(tenant, resources=resources, store=store,
                                    health=Health())
            if action == "push":
                return MkReport.of_push(await runtime.push(ids))
            return MkReport.of_pull(await runtime.pull(ids))
    except StateLockedError as exc:
        if not exc.holder.is_daemon:
            raise
    # The daemon started in the meantime: it holds the state now.
    return await through_daemon(config, tenant, action, ids)


async def through_daemon(config: Config, tenant: TenantConfig, action: Write,
                         ids: Sequence[str]) -> MkReport:
    """`POST /api/tenants/{t}/metakocka/<action>` on the daemon, MAX_IDS ids a call."""
    http = config.http
    token = http.admin_token
    if token is None:
        raise UsageError(
            f"{tenant.id}: the daemon holds the state and http.admin_token is not set, so"
            f" `crmsync metakocka {action}` cannot ask it: set http.admin_token (and restart"
            " the daemon), or stop the daemon and run this again")
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(http.host, http.host)  # noqa: S104
    base = f"http://[{host}]:{http.port}" if ":" in host else f"http://{host}:{http.port}"
    url = f"{base}/api/tenants/{tenant.id}/metakocka/{action}"
    headers = {"Authorization": f"Bearer {token.reveal()}"}
    results: list[MkResult] = []
    async with aiohttp.ClientSession(timeout=CALL_TIMEOUT) as session:
        for start in range(0, len(ids), MAX_IDS):
            body = msgspec.json.encode({ID_FIELDS[action]: list(ids[start:start + MAX_IDS])})
            try:
                async with session.post(url, data=body, headers={
                        **headers, "Content-Type": "application/json"}) as response:
                    answer = await response.read()
                    status = response.status
            except aiohttp.ClientError as exc:
                raise CrmsyncError(
                    f"{tenant.id}: the daemon holds the state but its management API at"
                    f" {base} did not answer ({type(exc).__name__}: {exc})") from None
            if status != 200:
                raise CrmsyncError(f"{tenant.id}: the daemon answered {status}:"
                                   f" {_error_of(answer)}")
            results.extend(msgspec.json.decode(answer, type=MkReport).results)
    return MkReport.of(results)


def _error_of(answer: bytes) -> str:
    try:
        decoded = msgspec.json.decode(answer)
    except msgspec.DecodeError:
        decoded = None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), str):
        return str(decoded["error"])
    return answer[:200].decode("utf-8", "replace").strip() or "(no body)"


# -- unsynced / mappings (read-only) --------------------------------------------------------


async def unsynced(config: Config, tenant: TenantConfig) -> UnsyncedAnswer:
    async with open_state(config) as store:
        return UnsyncedAnswer.of([] if store is None else await store.mk_unsynced.list(
            tenant.id))


async def mappings(config: Config, tenant: TenantConfig, *, crm_record_id: str | None,
                   mk_id: str | None) -> MappingsAnswer:
    async with open_state(config) as store:
        if store is None:
            return MappingsAnswer(mappings=[])
        return MappingsAnswer.of(await read_mappings(
            store, tenant.id, tenant.object_types[0], crm_record_id=crm_record_id,
            mk_id=mk_id))


# -- output ---------------------------------------------------------------------------------


def report_table(tenant_id: str, action: Write, report: MkReport) -> Table:
    table = Table(title=f"{escape(tenant_id)}: metakocka {action}: {report.total} ids,"
                  f" {report.succeeded} succeeded, {report.failed} failed",
                  title_justify="left")
    table.add_column("CRM record" if action == "push" else "Metakocka id", overflow="fold")
    table.add_column("result")
    table.add_column("Metakocka id" if action == "push" else "CRM record", overflow="fold")
    table.add_column("error", ratio=1, overflow="fold")
    for r in report.results:
        asked, other = (r.crm_record_id, r.mk_id) if action == "push" else (
            r.mk_id, ", ".join(r.crm_record_ids or []))
        error = "" if r.error is None else f"{r.error.category}: {r.error.message}"
        table.add_row(escape(asked or ""), r.action if r.ok else f"[red]{r.action}[/]",
                      escape(other or ""), escape(error))
    return table


def unsynced_table(tenant_id: str, answer: UnsyncedAnswer) -> Table:
    table = Table(title=f"{escape(tenant_id)}: {len(answer.partners)} unsynced Metakocka"
                  " partners", title_justify="left")
    for column in ("Metakocka id", "name", "email", "phone", "discovered"):
        table.add_column(column, overflow="fold")
    for p in answer.partners:
        table.add_row(*(escape(v or "") for v in (p.mk_id, p.name, p.email, p.phone,
                                                 p.discovered_at)))
    return table


def mappings_table(tenant_id: str, answer: MappingsAnswer) -> Table:
    table = Table(title=f"{escape(tenant_id)}: {len(answer.mappings)} CRM person <->"
                  " Metakocka partner pairs", title_justify="left")
    for column in ("CRM record", "Metakocka id", "contact id", "direction", "last synced"):
        table.add_column(column, overflow="fold")
    for m in answer.mappings:
        table.add_row(*(escape(v or "") for v in (m.crm_record_id, m.mk_id, m.mk_contact_id,
                                                 m.direction, m.last_synced_at)))
    return table


async def _run(args: argparse.Namespace) -> int:
    action: str = args.action
    read_only = action in ("unsynced", "mappings")
    # The readers need no API key; push and pull may build the tenant's clients.
    config = load_config(args.config, resolve_secrets=not read_only)
    tenant = _linked(config, args.tenant)
    console = Console()
    document: msgspec.Struct
    if action == "unsynced":
        document = answer = await unsynced(config, tenant)
        table = unsynced_table(tenant.id, answer)
        ok = True
    elif action == "mappings":
        document = found = await mappings(config, tenant, crm_record_id=args.crm_record_id,
                                          mk_id=args.mk_id)
        table = mappings_table(tenant.id, found)
        ok = True
    else:
        verb: Write = "push" if action == "push" else "pull"
        document = report = await write(config, tenant, verb, args.ids)
        table = report_table(tenant.id, verb, report)
        ok = report.failed == 0
    if args.json:
        sys.stdout.write(msgspec.json.encode(document).decode() + "\n")
    else:
        console.print(table)
    return EXIT_OK if ok else EXIT_FAILED


def run(args: argparse.Namespace) -> int:
    return run_async(_run(args))
