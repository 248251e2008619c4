"""The request line a CRM signed reaches the adapter's `verify_webhook`.

HubSpot signs the method and the full URL it delivered to. Behind a reverse proxy the
listener sees its own host, so the URL handed to the adapter is `http.public_url` plus
the request's path and query when that is set, else the URL as received.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import pytest
from support.quo_hooks import TENANT, hook_world
from yarl import URL

from crmsync.config import Secret, TenantConfig
from crmsync.store.subscriptions import Subscription
from crmsync.web.targets import WebhookTarget

BODY = b'{"webhook_id":"w","events":[{"event_type":"record.updated","id":{"record_id":"r"}}]}'


async def test_the_adapter_verifies_with_the_method_and_the_url_the_crm_delivered_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with hook_world(tmp_path) as world:
        await world.store.subscriptions.upsert(Subscription(
            tenant_id=TENANT, source="crm", name="crm", remote_id="w", secret="s",
            url="", detail="{}", healthy=True, checked_at=time.time()))
        seen: list[tuple[str, str]] = []

        def verify(headers: Mapping[str, str], body: bytes, secret: str, *,
                   method: str = "", url: str = "") -> None:
            seen.append((method, url))

        monkeypatch.setattr(world.adapter, "verify_webhook", verify)
        url = f"{world.public_url}/webhooks/{TENANT}/crm?token=a%3Ab"
        # encoded=True: sent exactly so (the client would otherwise re-quote `%3A`).
        async with world.http.post(URL(url, encoded=True), data=BODY) as response:
            assert response.status == 200, await response.text()

        assert seen == [("POST", url)]


def test_behind_a_proxy_the_url_is_the_public_url_plus_the_path(tmp_path: Path) -> None:
    tenant = TenantConfig(id=TENANT, crm="attio", quo_api_key=Secret("env:Q", "q"),
                          crm_api_key=Secret("env:C", "c"))
    behind = WebhookTarget(tenant, adapter=None,  # type: ignore[arg-type]
                           store=None,  # type: ignore[arg-type]
                           public_url="https://sync.example.com/")
    direct = WebhookTarget(tenant, adapter=None,  # type: ignore[arg-type]
                           store=None)  # type: ignore[arg-type]

    path = f"/webhooks/{TENANT}/crm?x=1"
    assert behind.delivered_url(path, "http://127.0.0.1:8787" + path) == (
        "https://sync.example.com" + path)
    assert direct.delivered_url(path, "http://127.0.0.1:8787" + path) == (
        "http://127.0.0.1:8787" + path)
