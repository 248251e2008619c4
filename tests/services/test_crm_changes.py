"""`CrmChangeHandler`: a CRM webhook → re-fetch → Quo, against real servers on 127.0.0.1.

The Attio simulator and the Quo simulator hold the data; where Attio must answer in a
way the simulator never does, a small stand-in Attio serves that one answer. The
mappings live in a real SQLite state database.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import msgspec
import pytest
from actors.harness import ATTIO_KEY, TENANT, attio_env, quo_env, state_store
from aiohttp import web

from crmsync.adapters.attio import AttioAdapter
from crmsync.adapters.base import CrmAdapter
from crmsync.adapters.errors import CrmDecodeError
from crmsync.net.ratelimit import Lane
from crmsync.net.retry import RetryPolicy
from crmsync.services.contact_writes import QuoContactSync, RecordWriter
from crmsync.services.crm_changes import CrmChangeHandler


def attio_body(event_type: str, record_id: str) -> bytes:
    """An Attio webhook body as Attio sends it (ids only, no values)."""
    return msgspec.json.encode({"webhook_id": "wh-1", "events": [{
        "event_type": event_type,
        "id": {"workspace_id": "ws-1", "object_id": "obj-people", "record_id": record_id},
        "actor": {"type": "workspace-member", "id": "m-1"},
    }]})


@contextlib.asynccontextmanager
async def attio_answering_data_null() -> AsyncIterator[AttioAdapter]:
    """An adapter for a stand-in Attio that answers every record lookup 200
    `{"data": null}`."""

    async def record(_: web.Request) -> web.Response:
        return web.json_response({"data": None})

    app = web.Application()
    app.router.add_get("/v2/objects/{object}/records/{record_id}", record)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        async with aiohttp.ClientSession() as session:
            yield AttioAdapter(
                session, api_key=ATTIO_KEY, base_url=f"http://127.0.0.1:{runner.addresses[0][1]}/v2",
                timeout=5, retry=RetryPolicy(max_retries=1, base_delay=0.01, max_delay=0.02),
            )
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("event_type", ["record.updated", "record.deleted"])
async def test_a_crm_webhook_whose_fetch_answers_data_null_leaves_the_quo_contact_in_place(
    tmp_path: Path, event_type: str
) -> None:
    """1. Ada is created in Attio; her `record.created` webhook makes her Quo contact
    2. another webhook for her arrives, and Attio answers its re-fetch (and the
    confirming fetch before any delete) with a 200 `{"data": null}`
    Result: the change fails with `CrmDecodeError` (the inbox retries it); her Quo
    contact is still there and her mapping is not marked deleted. (It used to be
    taken for "gone": the contact was deleted.)"""
    async with (
        attio_env() as attio, quo_env() as quo, state_store(tmp_path) as store,
        attio_answering_data_null() as odd,
    ):
        live = QuoContactSync(quo.client, lane=Lane.LIVE)

        def handler(adapter: CrmAdapter) -> CrmChangeHandler:
            return CrmChangeHandler(TENANT, adapter=adapter, store=store, quo=quo.client,
                                    records=RecordWriter(TENANT, store=store, sync=live))

        ada = attio.sim.add_person(first_name="Ada", emails=["ada@example.com"], notify=False)
        created = attio.adapter.parse_webhook({}, attio_body("record.created", ada))
        assert await handler(attio.adapter).handle(created) == ["created"]
        contact = quo.contacts_by_external_id()[ada]
        writes = quo.writes()

        event = odd.parse_webhook({}, attio_body(event_type, ada))
        with pytest.raises(CrmDecodeError):
            await handler(odd).handle(event)

        assert quo.contacts_by_external_id()[ada]["id"] == contact["id"]
        assert quo.writes() == writes  # no DELETE was even tried
        mapping = await store.mappings.get(TENANT, "people", ada)
        assert mapping is not None and mapping.deleted_at is None
