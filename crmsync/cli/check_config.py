"""`crmsync check-config`: validate the config and print it normalised, secrets masked.

Problems surface as a `ConfigError`, which `crmsync.cli.main` prints one line
each before exiting 2. A valid config that will not do what its author likely expects
gets a `note:` line on stderr and still exits 0: a tenant whose CRM's webhooks are set
up by hand (HubSpot) without `crm_webhook_secret` receives CRM changes by polling only.
"""

from __future__ import annotations

import argparse
import sys

from crmsync.adapters.registry import ADAPTERS
from crmsync.config import Config, load_config, render_config
from crmsync.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the common `-c/--config`."""


def notes(config: Config) -> list[str]:
    """What a valid config leaves to polling that its author may not know."""
    found = []
    for index, tenant in enumerate(config.tenants):
        factory = ADAPTERS.get(tenant.crm)
        hand_made = factory is not None and not getattr(factory, "webhooks_by_api", True)
        if hand_made and tenant.crm_webhook_secret is None:
            found.append(
                f"note: tenants[{index}] ({tenant.id}): {tenant.crm} webhooks are set up in "
                f"{tenant.crm} and signed with its app's client secret; without "
                "crm_webhook_secret they cannot be verified and CRM changes arrive by "
                "polling only (every poll_interval)")
    return found


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    sys.stdout.write(render_config(config))
    for line in notes(config):
        print(line, file=sys.stderr)
    return EXIT_OK
