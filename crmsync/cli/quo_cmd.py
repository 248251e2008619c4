"""`crmsync quo migrate-webhooks --tenant ID`: move a tenant's Quo webhooks to 2026-03-30.

    $ crmsync quo migrate-webhooks --tenant acme
    acme: listening on 127.0.0.1:8787 for Quo's deliveries to https://sync.example.com
    acme: legacy: 2 legacy webhooks on https://sync.example.com/webhooks/acme/quo: WH1, WH2
    acme: create: webhook 17 created, disabled; signing key stored
    acme: test: signed message.received test event sent to https://…/webhooks/acme/quo
    acme: verified: delivery msg_… succeeded: the listener verified the signature
    acme: enable: webhook 17 enabled
    acme: delete: legacy webhooks deleted: WH1, WH2 (2 secrets kept a day for late …)
    acme: done: webhook 17 (2026-03-30) delivers; no legacy webhook left

The same steps the daemon takes at start when `quo.webhooks = "2026-03-30"`
(`services/webhook_migration.py`), on demand and printed one line each. A failed step
leaves the legacy webhooks in place and ends with exit 1 and the step and reason.

The test event must be verified by a listener reachable at `http.public_url`, which
while the daemon is stopped is nobody: so this command serves the daemon's webhook
listener itself (`http.host`/`http.port`, this tenant only) for as long as it runs.
Whatever Quo delivers meanwhile (the test event, live events of either system) is
stored in the inbox, and `crmsync run` applies it when it starts.

It writes the state, so it holds the state lock. Beside a running daemon it is refused
with one line (exit 2): the daemon does this itself at every start and every
subscription check, so restarting it is the way to migrate then. (Asking the running
daemon over its HTTP listener was not chosen: the listener has no authenticated
management API yet, and an unauthenticated route that deletes webhooks is no option.)
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from crmsync.cli.common import require_tenant
from crmsync.config import Config, TenantConfig, load_config
from crmsync.daemon.loop import run_async
from crmsync.errors import EXIT_FAILED, EXIT_OK, CrmsyncError, UsageError
from crmsync.quo.errors import QuoAuthError
from crmsync.services.subscriptions import SubscriptionManager
from crmsync.services.webhook_migration import MigrationFailed
from crmsync.store import StateLockedError, Store, open_store
from crmsync.tenant.resources import open_resources
from crmsync.web.app import build_app, serve
from crmsync.web.health import Health
from crmsync.web.targets import WebhookTarget


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    migrate = actions.add_parser(
        "migrate-webhooks",
        help="move a tenant's Quo webhooks from legacy to 2026-03-30 without a gap",
    )
    migrate.add_argument("-c", "--config", metavar="PATH", default=argparse.SUPPRESS,
                         help="config file (default ./crmsync.toml, then $CRMSYNC_CONFIG)")
    migrate.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                         help="show tracebacks")
    migrate.add_argument("--tenant", required=True, metavar="ID", help="tenant id")
    migrate.add_argument("--within", type=float, default=None, metavar="SECONDS",
                         help="how long to wait for the test event to be verified "
                              "(default 45)")


def _check(config: Config, tenant: TenantConfig) -> str:
    """The tenant's public URL; a `UsageError` when the config cannot migrate it."""
    if config.quo.webhooks == "legacy":
        raise UsageError(
            f'{tenant.id}: quo.webhooks is "legacy" in the config: set it to "2026-03-30"'
            " first (with \"legacy\" the daemon would re-create the legacy webhooks)"
        )
    if config.http.public_url is None:
        raise UsageError(
            f"{tenant.id}: http.public_url is not set: Quo needs it to deliver to this"
            " daemon (no webhooks are registered without it)"
        )
    return config.http.public_url


def _locked(tenant: TenantConfig, error: StateLockedError) -> UsageError:
    if not error.holder.is_daemon:
        return error
    return UsageError(
        f"{tenant.id}: the daemon {error.holder.describe()} holds the state, and it moves"
        " the Quo webhooks itself at start and at every subscription check: restart it"
        " (e.g. `systemctl restart crmsync`), or stop it and run this again"
    )


async def _migrate(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    tenant = require_tenant(config, args.tenant)
    public_url = _check(config, tenant)
    command = f"crmsync quo migrate-webhooks --tenant {tenant.id}"
    try:
        async with open_store(config.daemon.state_location, command=command,
                              tenants=[tenant.id]) as store:
            return await _with_store(config, tenant, store, public_url, args.within)
    except StateLockedError as exc:
        raise _locked(tenant, exc) from None


async def _with_store(
    config: Config, tenant: TenantConfig, store: Store, public_url: str,
    within: float | None,
) -> int:
    def say(line: str) -> None:
        print(f"{tenant.id}: {line}", flush=True)

    async with contextlib.AsyncExitStack() as stack:
        resources = await stack.enter_async_context(open_resources(config))
        clients = resources.clients_for(tenant)
        target = WebhookTarget.for_tenant(config, tenant, adapter=clients.adapter, store=store)
        app = build_app(
            targets=lambda tenant_id: target if tenant_id == tenant.id else None,
            store=store, config=lambda: config, health=Health(),
            max_body_bytes=config.http.max_body_bytes,
        )
        http = config.http
        try:
            port = await stack.enter_async_context(serve(app, http.host, http.port))
        except OSError as exc:
            raise CrmsyncError(
                f"{tenant.id}: cannot listen on {http.host}:{http.port} ({exc.strerror}):"
                f" Quo's test event must reach this command through {public_url}"
            ) from None
        say(f"listening on {http.host}:{port} for Quo's deliveries to {public_url}")
        manager = SubscriptionManager(
            tenant.id, adapter=clients.adapter, quo=clients.quo, store=store,
            public_url=public_url, hooks=clients.quo_webhooks, system="2026-03-30",
            contact_events=tenant.quo_to_crm != "off", verify_within=within,
        )
        try:
            result = await manager.migrate(report=say)
        except MigrationFailed as failed:
            print(f"crmsync: {tenant.id}: migration failed at step '{failed.step}':"
                  f" {failed.reason}; the legacy webhooks are untouched",
                  file=sys.stderr, flush=True)
            return EXIT_FAILED
        except QuoAuthError as exc:
            raise CrmsyncError(
                f"{tenant.id}: Quo rejected the API key ({exc}); check quo_api_key"
            ) from None
    webhook = result.webhook_id if result is not None else manager.quo_webhook_id
    say(f"done: webhook {webhook} (2026-03-30) delivers; no legacy webhook left")
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.action == "migrate-webhooks":
        return run_async(_migrate(args))
    raise UsageError(f"crmsync quo: unknown action {args.action!r}")  # argparse prevents it
