"""End to end: `crmsync run` (a subprocess) verifies Quo's 2026-03-30 signatures.

1. the daemon starts on the new system (the config's default): it registers its
   webhook at the Quo simulator and keeps the `whsec_` key
2. the simulator delivers SMS whose first attempt is signed with another key, stamped
   6 minutes in the past or in the future, or unsigned (the simulator's `SignOverride`;
   its retries are scheduled an hour later, so they stay out of the test)
3. requests with malformed Standard Webhooks headers are posted straight to the daemon
4. a correctly signed SMS follows, and is delivered again through Quo's manual retry
Result: every attempt of 2. and 3. is answered 401 and none is stored; the daemon
stays healthy; the SMS of 4. is stored once (the retry is a duplicate of its
`webhook-id`) and becomes exactly one note; it is the only message event stored.
"""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path

import pytest
from support.live import TENANT, inbox, live_env, notes_of, unique_phones

from crmsync.sim.quo.delivery_v2 import SignOverride

pytestmark = pytest.mark.slow

PEOPLE = 10
OTHER_KEY = "whsec_" + base64.b64encode(b"an impostor's key, 32 bytes long").decode()
PATH = f"/webhooks/{TENANT}/quo"


async def raw_status(base_url: str, body: bytes, headers: list[tuple[str, str]]) -> int:
    """POST with header lines as written (aiohttp's client would merge a repeated one)."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    try:
        writer.write(f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                     f"Content-Length: {len(body)}\r\n{lines}\r\n".encode() + body)
        await writer.drain()
        async with asyncio.timeout(10):
            status_line = await reader.readline()
            await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(status_line.split()[1])


async def test_bad_or_stale_signatures_are_401_and_a_good_one_is_one_note(
    tmp_path: Path,
) -> None:
    async with (
        live_env(tmp_path, people=PEOPLE, webhook_retry_schedule=(0, 3600)) as env,
        env.daemon() as daemon,
    ):
        quo = env.quo
        (webhook,) = quo.webhooks_v2.values()
        assert webhook["key"].startswith("whsec_") and webhook["status"] == "enabled"
        assert quo.webhooks == {}  # no legacy webhook on the new system
        person, phone = next(iter(unique_phones(env.attio).items()))

        now = int(time.time())
        bad = {
            "another key": SignOverride(key=OTHER_KEY),
            "6 min old": SignOverride(timestamp=now - 360),
            "6 min ahead": SignOverride(timestamp=now + 360),
            "unsigned": SignOverride(omit=True),
        }
        refused = []
        for why, override in bad.items():
            message = quo.workspace.add_message(phone, f"impostor: {why}")
            publication = await quo.publish(
                "message.received", quo.payloads.message(message)[0], sign=override
            )
            (delivery,) = publication.deliveries
            assert [a.response_status_code for a in delivery.attempts] == [401], why
            refused.append(publication.event_id)

        body = publication.body  # a real envelope; the headers below are what is wrong
        delivery_id = "msg_e2eMalformed"
        stamp = str(int(time.time()))
        for headers in (
            [("webhook-id", delivery_id), ("webhook-timestamp", stamp),
             ("webhook-signature", "v1" + "A" * 44)],  # no comma (a ValueError once)
            [("webhook-id", delivery_id), ("webhook-timestamp", "9" * 40),
             ("webhook-signature", "v1," + "A" * 43 + "=")],
            [("webhook-id", delivery_id), ("webhook-timestamp", stamp),
             ("webhook-signature", " ".join(["v1," + "A" * 43 + "="] * 20))],
            [("webhook-id", delivery_id), ("webhook-id", "msg_2"), ("webhook-timestamp", stamp),
             ("webhook-signature", "v1," + "A" * 43 + "=")],
            [("webhook-id", "")],
        ):
            assert await raw_status(daemon.base_url, body, headers) == 401, headers
        status, _ = await daemon.get("/healthz")
        assert status == 200 and daemon.running

        good = await quo.sms(phone, "Hello through the 2026-03-30 webhook")
        (delivery,) = good.deliveries
        assert [a.response_status_code for a in delivery.attempts] == [200]
        await daemon.wait_for(lambda: len(notes_of(env.attio, person)) >= 1,
                              message="one note on the person")
        assert await quo.hooks.attempt(delivery, "manual")  # 2xx: a duplicate

        async def processed() -> bool:
            rows = [e for e in await inbox(env.e2e) if e["eventId"] == good.event_id]
            return len(rows) == 1 and rows[0]["state"] == "processed"

        await daemon.wait_for(processed, message="the SMS processed")
        # The daemon's own contact writes fire `contact.updated` too: count messages only.
        events = await inbox(env.e2e)
        stored = {e["eventId"] for e in events if e["eventType"].startswith("message.")}
        assert stored == {good.event_id}, events
        assert not {e["eventId"] for e in events} & set(refused)
        (note,) = notes_of(env.attio, person)
        assert "Hello through the 2026-03-30 webhook" in note["content_markdown"]
