"""The CRM side of `SubscriptionManager.ensure()` and what `crmsync status` says of it.

A CRM whose webhooks crmsync creates through the API (Attio) gets one and status says
"webhooks". A CRM whose webhooks are set up in the CRM by hand (a HubSpot app,
`webhooks_by_api = False`) gets no API call; with `crm_webhook_secret` its deliveries
can be verified ("webhooks"), without one status says the tenant is on polling only.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.quo_hooks import TENANT, HookWorld, hook_world

from crmsync.adapters.attio import AttioAdapter
from crmsync.config import Config, HttpConfig
from crmsync.domain.status import build_status
from crmsync.services.subscriptions import SubscriptionManager


class HandMadeWebhooks(AttioAdapter):
    """An adapter whose CRM cannot create webhooks through its API."""

    webhooks_by_api = False

    async def ensure_webhook(self, target_url: str) -> tuple[str, str | None]:
        raise AssertionError("a hand-made webhook is never created through the API")


def manager(world: HookWorld, *, static_secret: bool, hand_made: bool) -> SubscriptionManager:
    adapter = world.adapter
    if hand_made:
        adapter = HandMadeWebhooks(world.http, api_key="k", base_url=world.attio_url)
    return SubscriptionManager(
        TENANT, adapter=adapter, quo=world.quo, store=world.store,
        public_url=world.public_url, hooks=world.hooks, system="2026-03-30",
        has_static_crm_secret=static_secret,
    )


async def crm_changes(world: HookWorld, config: Config | None = None) -> str:
    report = await build_status(config or world.config, world.store)
    (tenant,) = report.tenants
    return tenant.crm_changes


@pytest.mark.parametrize(
    ("static_secret", "expected"),
    [(True, "webhooks"),
     (False, "polling only: crm_webhook_secret is not set, so CRM webhooks cannot be"
             " verified")],
)
async def test_a_hand_made_crm_webhook_is_noted_and_status_says_how_changes_arrive(
    tmp_path: Path, static_secret: bool, expected: str,
) -> None:
    async with hook_world(tmp_path) as world:
        assert await crm_changes(world) == "not set up yet"

        await manager(world, static_secret=static_secret, hand_made=True).ensure()

        assert await crm_changes(world) == expected
        assert world.attio_sim.webhooks == {}  # nothing was created at the CRM


async def test_a_webhook_created_through_the_api_reads_webhooks(tmp_path: Path) -> None:
    async with hook_world(tmp_path) as world:
        await manager(world, static_secret=False, hand_made=False).ensure()

        assert await crm_changes(world) == "webhooks"
        assert len(world.attio_sim.webhooks) == 1


async def test_without_a_public_url_status_says_polling_only(tmp_path: Path) -> None:
    async with hook_world(tmp_path) as world:
        config = Config(daemon=world.config.daemon, quo=world.config.quo,
                        tenants=world.config.tenants, http=HttpConfig(public_url=None))
        assert await crm_changes(world, config) == "polling only: http.public_url is not set"
