"""Quo simulator, 2026-03-30 webhooks: the version header, the 2026 error envelope, ids,
and create / list / get / PATCH / delete / rotate (research §2.1-§2.4, §5.2)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sim.quo_v2_support import QuoV2, quo_v2

from crmsync.sim.quo import QuoSimConfig

URL = "https://example.com/hook"
DOCS = "https://quo.com/docs"


@pytest.fixture
async def quo() -> AsyncIterator[QuoV2]:
    async with quo_v2() as env:
        yield env


# -- the version header and the envelope -----------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Quo-Api-Version": "2025-01-01"}, {"x-quo-api-version": "2026-03-30"}],
)
async def test_a_missing_or_other_version_is_400_before_auth(
    quo: QuoV2, headers: dict[str, str]
) -> None:
    async with quo.api.session.get(quo.root + "/webhooks", headers=headers) as response:
        assert response.status == 400
        assert await response.json() == {
            "title": "Bad Request",
            "message": "Unsupported or missing Quo-Api-Version header. "
            "Supported versions: 2026-03-30",
            "docs": DOCS,
        }
    assert quo.sim.count("GET", "/webhooks", 400) == 1


async def test_v1_needs_no_version_header(quo: QuoV2) -> None:
    assert (await quo.v1.get("/phone-numbers")).status == 200


async def test_a_bad_key_is_401_in_the_2026_envelope(quo: QuoV2) -> None:
    response = await quo.api.get("/webhooks", headers={"Authorization": "wrong"})
    assert response.status == 401
    assert response.json == {
        "title": "Unauthorized", "message": "You are unauthorized to access the webhook",
        "docs": DOCS,
    }


async def test_unknown_routes_and_methods_answer_in_the_2026_envelope(quo: QuoV2) -> None:
    missing = await quo.api.get("/no-such-thing")
    assert missing.status == 404 and missing.json["docs"] == DOCS
    wrong_method = await quo.api.request("PUT", "/webhooks")
    assert wrong_method.status == 405 and wrong_method.json["title"] == "Method Not Allowed"


async def test_the_rate_limit_is_shared_with_v1() -> None:
    config = QuoSimConfig(requests_per_second=2, window_seconds=60.0)
    async with quo_v2(config) as quo:
        assert (await quo.v1.get("/phone-numbers")).status == 200
        assert (await quo.api.get("/webhooks")).status == 200
        limited = await quo.api.get("/webhooks")
    assert limited.status == 429
    assert limited.json == {
        "title": "Too Many Requests", "message": "API rate limit exceeded", "docs": DOCS,
    }


async def test_injected_failures_use_the_2026_envelope(quo: QuoV2) -> None:
    quo.sim.faults.fail(1)
    response = await quo.api.get("/webhooks")
    assert response.status == 500
    assert response.json["title"] == "Unknown Error"


# -- create, get, list ------------------------------------------------------------------


async def test_create_answers_201_with_the_key_that_nothing_else_shows(quo: QuoV2) -> None:
    created = await quo.webhook(URL, ["message.received", "contact.updated"], label="crm")
    assert created["id"].isdigit()
    assert created["key"].startswith("whsec_")
    assert created["apiVersion"] == "2026-03-30"
    assert created["resourceIds"] == ["*"] and created["status"] == "enabled"
    assert created["orgId"].startswith("OR") and "userId" not in created
    fetched = await quo.api.get(f"/webhooks/{created['id']}")
    listed = await quo.api.get("/webhooks")
    assert fetched.status == 200 and "key" not in fetched.json["data"]
    assert listed.json == {"data": [fetched.json["data"]]}
    assert {k: v for k, v in created.items() if k != "key"} == fetched.json["data"]
    assert quo.sim.webhooks_v2[created["id"]]["key"] == created["key"]
    assert quo.sim.webhooks == {}  # the legacy system is untouched


async def test_ids_are_numeric_strings_never_reused(quo: QuoV2) -> None:
    first = await quo.webhook(URL, ["message.received"])
    assert (await quo.api.delete(f"/webhooks/{first['id']}")).status == 204
    second = await quo.webhook(URL, ["message.received"], status="disabled")
    assert int(second["id"]) > int(first["id"])
    assert second["status"] == "disabled"


@pytest.mark.parametrize(
    ("body", "paths"),
    [
        ({}, ["/url", "/events"]),
        ({"url": URL, "events": []}, ["/events"]),
        ({"url": URL, "events": ["message.recieved"]}, ["/events/0"]),
        ({"url": "not a url", "events": ["call.completed"]}, ["/url"]),
        ({"url": URL, "events": ["call.completed"], "resourceIds": ["US1"]}, ["/resourceIds"]),
        ({"url": URL, "events": ["call.completed"], "resourceIds": []}, ["/resourceIds"]),
        ({"url": URL, "events": ["call.completed"], "status": "paused"}, ["/status"]),
        ({"url": URL, "events": ["call.completed"], "apiVersion": "2026-03-30"},
         ["/apiVersion"]),
    ],
)
async def test_invalid_create_bodies_list_every_bad_field(
    quo: QuoV2, body: dict[str, object], paths: list[str]
) -> None:
    response = await quo.api.post("/webhooks", json=body)
    assert response.status == 400
    assert response.json["code"] == "0304400"
    assert sorted(e["path"] for e in response.json["errors"]) == sorted(paths)
    assert quo.sim.webhooks_v2 == {}


async def test_a_malformed_body_is_400(quo: QuoV2) -> None:
    response = await quo.api.post(
        "/webhooks", headers={"Content-Type": "application/json"}, json=None
    )
    assert response.status == 400 and response.json["title"] == "Bad Request"


@pytest.mark.parametrize("path", ["/webhooks/abc", "/webhooks/WH1/rotate", "/webhooks/1a/events"])
async def test_a_non_numeric_id_is_400(quo: QuoV2, path: str) -> None:
    method = "POST" if path.endswith("rotate") else "GET"
    response = await quo.api.request(method, path)
    assert response.status == 400
    assert response.json["code"] == "0303400"
    [error] = response.json["errors"]
    assert error["path"] == "/webhookId"
    assert error["message"] == "Expected string to match '^[0-9]+$'"
    assert error["schema"] == {"type": "String", "pattern": "^[0-9]+$"}


async def test_an_unknown_id_is_404(quo: QuoV2) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        body = {"label": "x"} if method == "PATCH" else None
        response = await quo.api.request(method, "/webhooks/999", json=body)
        assert response.status == 404
        assert response.json["message"] == "Webhook with ID 999 not found"


async def test_at_most_50_webhooks(quo: QuoV2) -> None:
    for _ in range(50):
        await quo.webhook(URL, ["contact.updated"])
    response = await quo.api.post("/webhooks", json={"url": URL, "events": ["contact.updated"]})
    assert response.status == 400
    assert len(quo.sim.webhooks_v2) == 50


# -- PATCH, delete, rotate --------------------------------------------------------------


async def test_patch_replaces_events_and_keeps_the_key(quo: QuoV2) -> None:
    created = await quo.webhook(
        URL, ["message.received", "call.completed"], resourceIds=["PN1"], label="a"
    )
    path = f"/webhooks/{created['id']}"
    response = await quo.api.patch(path, json={"events": ["contact.deleted"], "label": None})
    assert response.status == 200
    data = response.json["data"]
    assert data["events"] == ["contact.deleted"] and data["label"] is None
    assert data["resourceIds"] == ["PN1"] and "key" not in data
    assert quo.sim.webhooks_v2[created["id"]]["key"] == created["key"]
    assert data["apiVersion"] == "2026-03-30"


@pytest.mark.parametrize("clear", [[], None, ["*"]])
async def test_patch_clears_resource_ids(quo: QuoV2, clear: list[str] | None) -> None:
    created = await quo.webhook(URL, ["call.completed"], resourceIds=["PN1", "PN2"])
    response = await quo.api.patch(f"/webhooks/{created['id']}", json={"resourceIds": clear})
    assert response.json["data"]["resourceIds"] == ["*"]


async def test_patch_pauses_and_resumes(quo: QuoV2) -> None:
    created = await quo.webhook(URL, ["call.completed"])
    path = f"/webhooks/{created['id']}"
    paused = await quo.api.patch(path, json={"status": "disabled"})
    assert paused.json["data"]["status"] == "disabled"
    resumed = await quo.api.patch(path, json={"status": "enabled", "url": URL + "2"})
    assert resumed.json["data"]["status"] == "enabled"
    assert resumed.json["data"]["url"] == URL + "2"


@pytest.mark.parametrize(
    ("body", "path"),
    [({}, "/body"), ({"apiVersion": "2027-01-01"}, "/apiVersion"), ({"events": []}, "/events"),
     ({"status": "on"}, "/status"), ({"label": 3}, "/label")],
)
async def test_invalid_patches_are_400(quo: QuoV2, body: dict[str, object], path: str) -> None:
    created = await quo.webhook(URL, ["call.completed"])
    response = await quo.api.patch(f"/webhooks/{created['id']}", json=body)
    assert response.status == 400
    assert [e["path"] for e in response.json["errors"]] == [path]


async def test_delete_is_204_without_a_body(quo: QuoV2) -> None:
    created = await quo.webhook(URL, ["call.completed"])
    response = await quo.api.delete(f"/webhooks/{created['id']}")
    assert response.status == 204 and response.body == b""
    assert (await quo.api.get(f"/webhooks/{created['id']}")).status == 404
    assert quo.sim.webhooks_v2 == {}


async def test_rotate_returns_only_a_new_key(quo: QuoV2) -> None:
    created = await quo.webhook(URL, ["call.completed"])
    response = await quo.api.post(f"/webhooks/{created['id']}/rotate")
    assert response.status == 200
    assert list(response.json) == ["data"] and list(response.json["data"]) == ["key"]
    key = response.json["data"]["key"]
    assert key.startswith("whsec_") and key != created["key"]
    assert quo.sim.webhooks_v2[created["id"]]["key"] == key
    fetched = (await quo.api.get(f"/webhooks/{created['id']}")).json["data"]
    assert fetched["events"] == ["call.completed"] and "key" not in fetched


async def test_requests_are_counted_by_route(quo: QuoV2) -> None:
    created = await quo.webhook(URL, ["call.completed"])
    await quo.api.get(f"/webhooks/{created['id']}")
    assert quo.sim.count("POST", "/webhooks", 201) == 1
    assert quo.sim.count("GET", "/webhooks/{id}", 200) == 1
    assert quo.sim.snapshot()["webhooks_v2"] == 1
