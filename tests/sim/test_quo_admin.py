"""Quo simulator: `/_sim` admin routes, the app factory, and the CLI entry point.

Admin routes are what subprocess tests and `crmsync demo` use: they bypass auth and
the rate limit and are not counted.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpClient

from crmsync.sim.quo import (
    QUO_SIM_KEY,
    PhoneLine,
    QuoSim,
    QuoSimConfig,
    create_quo_app,
    run_quo_simulator,
    serve_quo_simulator_forever,
)
from crmsync.sim.quo.testing import SimApi, contact_body, wait_until


@pytest.fixture
async def quo() -> AsyncIterator[tuple[QuoSim, SimApi, str]]:
    config = QuoSimConfig(bulk_visibility_delay=(30.0, 30.0), seed=9)
    async with (
        run_quo_simulator(config=config) as (sim, base_url),
        aiohttp.ClientSession() as session,
    ):
        yield sim, SimApi(session, base_url, sim.api_key), base_url.removesuffix("/v1")


async def test_stats_json(quo: tuple[QuoSim, SimApi, str]) -> None:
    sim, api, root = quo
    await api.post("/contacts", json=contact_body("s1"))
    await api.post("/contacts", json=contact_body("s1"))
    await api.post("/contacts/bulk", json={"contacts": [contact_body("s2"), {"nope": 1}]})
    await asyncio.gather(*(api.get("/phone-numbers") for _ in range(10)))
    async with api.session.get(root + "/_sim/stats") as response:
        stats = await response.json()
    assert stats["requests"]["POST /v1/contacts"] == {"201": 1, "409": 1}
    assert stats["requests"]["POST /v1/contacts/bulk"] == {"202": 1}
    assert stats["requests"]["GET /v1/phone-numbers"] == {"200": 7, "429": 3}
    assert stats["requests_total"] == 13 and stats["rate_limited"] == 3
    assert stats["max_in_any_window"] == {"test-key": 13}
    assert stats["keys"]["test-key"] == {"arrivals": 13, "rejected": 3, "max_in_any_window": 13}
    assert (stats["contacts"], stats["contacts_pending"]) == (1, 1)
    assert stats["bulk"]["dropped_invalid"] == 1 and stats["bulk_dropped"] == 1
    assert stats["faults"]["injected_failures"] == 0
    assert "/_sim/stats" not in str(stats["requests"])  # admin calls are not counted

    async with api.session.post(root + "/_sim/reset-stats") as response:
        assert response.status == 204
    assert sim.snapshot()["requests"] == {} and sim.max_in_any_window == {"test-key": 0}
    assert sim.snapshot()["contacts"] == 1  # data survives a stats reset


async def test_admin_contacts_keys_and_never_visible(quo: tuple[QuoSim, SimApi, str]) -> None:
    sim, api, root = quo
    await api.post("/contacts", json=contact_body("visible"))
    async with api.session.post(
        root + "/_sim/bulk-never-visible", json={"externalIds": ["ghost"]}
    ) as response:
        assert await response.json() == {"externalIds": ["ghost"]}
    body = {"contacts": [contact_body("ghost"), contact_body("later")]}
    await api.post("/contacts/bulk", json=body)
    async with api.session.get(root + "/_sim/contacts") as response:
        listing = await response.json()
    assert [c["externalId"] for c in listing["data"]] == ["visible"]
    assert listing["pending"] == 2
    async with api.session.post(root + "/_sim/contacts/flush") as response:
        assert await response.json() == {"materialised": 2}
    assert sorted(c["externalId"] for c in sim.contacts.contacts.values()) == ["later", "visible"]

    async with api.session.post(root + "/_sim/api-keys", json={"key": "second"}) as response:
        assert response.status == 201
    assert (await SimApi(api.session, api.base_url, "second").get("/phone-numbers")).status == 200


async def test_simulate_message_and_call(quo: tuple[QuoSim, SimApi, str]) -> None:
    sim, api, root = quo
    got: list[bytes] = []
    app = web.Application()

    async def hook(request: web.Request) -> web.Response:
        got.append(await request.read())
        return web.Response()

    app.router.add_post("/h", hook)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/h"
        for family, events in (
            ("messages", ["message.received"]),
            ("calls", ["call.completed"]),
            ("call-summaries", ["call.summary.completed"]),
        ):
            created = await api.post(f"/webhooks/{family}", json={"url": url, "events": events})
            assert created.status == 201
        async with api.session.post(
            root + "/_sim/simulate/message", json={"participant": "+14155550777", "text": "hi"}
        ) as response:
            result = await response.json()
        assert [d["status"] for d in result["deliveries"]] == [200]
        assert sim.workspace.messages[result["data"]["id"]]["text"] == "hi"
        async with api.session.post(
            root + "/_sim/simulate/call",
            json={"participant": "+14155550777", "summary": ["talked"], "transcript": ["a", "b"]},
        ) as response:
            result = await response.json()
        assert [d["type"] for d in result["deliveries"]] == [
            "call.completed", "call.summary.completed"
        ]
        assert len(got) == 3
        async with api.session.get(root + "/_sim/webhooks") as response:
            assert len((await response.json())["data"]) == 3
    finally:
        await runner.cleanup()


async def test_admin_rejects_malformed_bodies(quo: tuple[QuoSim, SimApi, str]) -> None:
    _, api, root = quo
    async with api.session.post(root + "/_sim/simulate/message", json={"text": "x"}) as response:
        assert response.status == 400
    async with api.session.post(root + "/_sim/api-keys", data=b"[") as response:
        assert response.status == 400


async def test_app_factory_with_test_client(aiohttp_client: AiohttpClient) -> None:
    lines = [PhoneLine(id="PNmain", number="+14155550123", name="Main")]
    app = create_quo_app(QuoSimConfig(api_keys=["k1"], phone_numbers=lines))
    client = await aiohttp_client(app)
    sim = app[QUO_SIM_KEY]
    response = await client.get("/v1/phone-numbers", headers={"Authorization": "k1"})
    assert response.status == 200
    assert [n["id"] for n in (await response.json())["data"]] == ["PNmain"]
    assert sim.count("GET", "/v1/phone-numbers", 200) == 1


async def test_seed_makes_ids_reproducible() -> None:
    first, second = QuoSim(QuoSimConfig(seed=42)), QuoSim(QuoSimConfig(seed=42))
    assert first.workspace.lines == second.workspace.lines
    assert first.contacts.create(contact_body("x"))["id"] == second.contacts.create(
        contact_body("x")
    )["id"]
    await first.aclose()
    await second.aclose()


async def test_serve_forever_prints_url_and_key(capsys: pytest.CaptureFixture[str]) -> None:
    config = QuoSimConfig(api_keys=["cli-key"])
    task = asyncio.create_task(serve_quo_simulator_forever("127.0.0.1", 0, config))
    printed: list[str] = []

    def banner_printed() -> bool:
        printed.append(capsys.readouterr().out)
        return "API key: cli-key" in "".join(printed)

    await wait_until(banner_printed, within=5.0)
    output = "".join(printed)
    match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", output)
    assert match is not None
    async with aiohttp.ClientSession() as session:
        api = SimApi(session, match.group(1), "cli-key")
        assert (await api.get("/phone-numbers")).status == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
