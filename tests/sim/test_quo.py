"""Quo simulator: auth and the `/v1/contacts` surface (create, list, get, PATCH, delete).

Each test runs a real simulator on a free port and talks plain HTTP to it. The rate
limit is raised here so contact tests are not throttled; test_quo_ratelimit.py
covers the limit itself.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime

import aiohttp
import pytest

from crmsync.sim.quo import CustomFieldDefinition, QuoSim, QuoSimConfig, run_quo_simulator
from crmsync.sim.quo.testing import SimApi, contact_body, wait_until

CONFLICT = {
    "message": "Failed to create contact",
    "code": "0800409",
    "status": 409,
    "docs": "https://openphone.com/docs",
    "title": "Conflict",
}


@pytest.fixture
async def quo() -> AsyncIterator[tuple[QuoSim, SimApi]]:
    config = QuoSimConfig(
        requests_per_second=10_000,
        seed=7,
        custom_fields=[CustomFieldDefinition(key="inbound-lead", name="Inbound Lead")],
    )
    async with (
        run_quo_simulator(config=config) as (sim, base_url),
        aiohttp.ClientSession() as session,
    ):
        yield sim, SimApi(session, base_url, sim.api_key)


# -- auth -----------------------------------------------------------------------------


async def test_raw_key_is_accepted(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    response = await api.get("/contacts", params={"maxResults": "10"})
    assert response.status == 200
    assert response.json["data"] == []


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Bearer test-key"}, {"Authorization": "wrong-key"}, {}],
    ids=["bearer", "unknown", "missing"],
)
async def test_bad_or_missing_key_is_401(
    quo: tuple[QuoSim, SimApi], headers: dict[str, str]
) -> None:
    sim, api = quo
    anonymous = SimApi(api.session, api.base_url, None)
    response = await anonymous.get("/contacts", params={"maxResults": "10"}, headers=headers)
    assert response.status == 401
    assert response.json["code"] == "0800401"
    assert response.json["title"] == "Unauthorized"
    assert sim.count("GET", "/v1/contacts", 401) == 1


async def test_new_key_is_401_until_activated() -> None:
    config = QuoSimConfig(key_activation_delay=0.3)
    async with run_quo_simulator(config=config) as (sim, base_url), aiohttp.ClientSession() as s:
        sim.add_api_key("fresh-key")
        api = SimApi(s, base_url, "fresh-key")
        assert (await api.get("/phone-numbers")).status == 401

        async def active() -> bool:
            return (await api.get("/phone-numbers")).status == 200

        await wait_until(active, within=3.0, interval=0.1, message="key activation")


# -- create -----------------------------------------------------------------------------


async def test_create_returns_201_with_quo_shape(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    body = contact_body("crm-1", phones=["+14155550100"], emails=["ada@example.com"])
    body["sourceUrl"] = "https://crm.example/people/1"
    response = await api.post("/contacts", json=body)
    assert response.status == 201
    contact = response.json["data"]
    assert re.fullmatch(r"[0-9a-f]{21}", contact["id"])
    assert contact["externalId"] == "crm-1"
    assert contact["source"] == "attio"
    assert contact["sourceUrl"] == "https://crm.example/people/1"
    fields = contact["defaultFields"]
    assert fields["firstName"] == "Ada" and fields["lastName"] == "Lovelace"
    assert fields["company"] is None and fields["role"] is None
    assert [p["value"] for p in fields["phoneNumbers"]] == ["+14155550100"]
    assert [e["value"] for e in fields["emails"]] == ["ada@example.com"]
    assert all(item["id"] for item in fields["phoneNumbers"] + fields["emails"])
    assert contact["customFields"] == []
    assert contact["createdByUserId"].startswith("US")
    for stamp in (contact["createdAt"], contact["updatedAt"]):
        assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).tzinfo is not None
    assert sim.contacts.contacts[contact["id"]] == contact


async def test_first_name_may_be_null_and_source_defaults(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    response = await api.post("/contacts", json={"defaultFields": {"firstName": None}})
    assert response.status == 201
    assert response.json["data"]["source"] == "public-api"
    assert response.json["data"]["externalId"] is None


async def test_duplicate_external_id_is_409_with_exact_body(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    assert (await api.post("/contacts", json=contact_body("dup"))).status == 201
    response = await api.post("/contacts", json=contact_body("dup", "Other"))
    assert response.status == 409
    assert response.json == CONFLICT
    assert len(sim.contacts.contacts) == 1


async def test_duplicate_phone_numbers_are_allowed(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    first = await api.post("/contacts", json=contact_body("a", phones=["+14155550101"]))
    second = await api.post("/contacts", json=contact_body("b", phones=["+14155550101"]))
    assert (first.status, second.status) == (201, 201)
    assert first.json["data"]["id"] != second.json["data"]["id"]


def _with(path: str, value: object) -> dict[str, object]:
    body = contact_body("ok-id", phones=["+14155550100"], emails=["a@example.com"])
    target: dict[str, object] = body
    *parents, leaf = path.split(".")
    for parent in parents:
        target = target[parent]  # type: ignore[assignment]
    if value is KeyError:
        del target[leaf]
    else:
        target[leaf] = value
    return body


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (_with("defaultFields", KeyError), "/defaultFields"),
        (_with("defaultFields.firstName", KeyError), "/defaultFields/firstName"),
        (
            _with("defaultFields.phoneNumbers", [{"name": "m", "value": "415-555-0100"}]),
            "/defaultFields/phoneNumbers/0/value",
        ),
        (
            _with("defaultFields.phoneNumbers", [{"name": "m", "value": "+04155550100"}]),
            "/defaultFields/phoneNumbers/0/value",
        ),
        (
            _with("defaultFields.emails", [{"value": "a@example.com"}]),
            "/defaultFields/emails/0/name",
        ),
        (_with("source", "openphone"), "/source"),
        (_with("source", "csv-import"), "/source"),
        (_with("source", "google-people"), "/source"),
        (_with("source", "x" * 73), "/source"),
        (_with("source", ""), "/source"),
        (_with("externalId", "x" * 76), "/externalId"),
        (_with("externalId", ""), "/externalId"),
        (_with("sourceUrl", "not a url"), "/sourceUrl"),
        (_with("sourceUrl", "https://x.example/" + "a" * 200), "/sourceUrl"),
    ],
    ids=[
        "no-defaultFields", "no-firstName", "phone-not-e164", "phone-leading-zero",
        "email-without-name", "source-reserved", "source-reserved-prefix",
        "source-reserved-google", "source-too-long", "source-empty", "externalId-too-long",
        "externalId-empty", "sourceUrl-not-uri", "sourceUrl-too-long",
    ],
)
async def test_invalid_create_bodies_are_400(
    quo: tuple[QuoSim, SimApi], body: dict[str, object], path: str
) -> None:
    sim, api = quo
    response = await api.post("/contacts", json=body)
    assert response.status == 400, response.json
    assert response.json["status"] == 400
    assert {"message", "code", "title", "docs"} <= response.json.keys()
    assert path in [error["path"] for error in response.json["errors"]]
    assert sim.contacts.contacts == {}


async def test_source_of_72_chars_and_externalid_of_75_are_fine(
    quo: tuple[QuoSim, SimApi],
) -> None:
    _, api = quo
    body = _with("source", "s" * 72) | {"externalId": "e" * 75}
    response = await api.post("/contacts", json=body)
    assert response.status == 201


async def test_malformed_json_is_400(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    async with api.session.post(
        api.base_url + "/contacts",
        data=b"{not json",
        headers={"Authorization": "test-key", "Content-Type": "application/json"},
    ) as response:
        assert response.status == 400


async def test_custom_fields_must_exist_in_the_workspace(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    unknown = _with("customFields", [{"key": "no-such-field", "value": "x"}])
    response = await api.post("/contacts", json=unknown)
    assert response.status == 400
    assert response.json["code"] == "0801400"
    known = _with("customFields", [{"key": "inbound-lead", "value": "yes"}])
    created = await api.post("/contacts", json=known)
    assert created.status == 201
    [field] = created.json["data"]["customFields"]
    assert (field["key"], field["name"], field["value"]) == ("inbound-lead", "Inbound Lead", "yes")
    definitions = await api.get("/contact-custom-fields")
    assert definitions.json["data"] == [
        {"name": "Inbound Lead", "key": "inbound-lead", "type": "string"}
    ]


# -- list -------------------------------------------------------------------------------


async def test_list_by_repeated_external_ids(quo: tuple[QuoSim, SimApi]) -> None:
    sim, _ = quo
    api = quo[1]
    for i in range(25):
        sim.contacts.create(contact_body(f"ext-{i}"))
    params = [("externalIds", f"ext-{i}") for i in range(20)] + [("maxResults", "50")]
    response = await api.get("/contacts", params=params)
    assert response.status == 200
    assert sorted(c["externalId"] for c in response.json["data"]) == sorted(
        f"ext-{i}" for i in range(20)
    )
    assert response.json["nextPageToken"] is None


async def test_more_than_20_external_ids_is_400(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    params = [("externalIds", f"ext-{i}") for i in range(21)] + [("maxResults", "50")]
    response = await api.get("/contacts", params=params)
    assert response.status == 400
    assert response.json["errors"][0]["path"] == "/externalIds"


async def test_comma_joined_external_ids_are_one_over_long_id(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    joined = ",".join(f"record-{i:04d}" for i in range(10))
    response = await api.get("/contacts", params={"externalIds": joined, "maxResults": "50"})
    assert response.status == 400
    assert "Expected string length less or equal to 75" in [
        e["message"] for e in response.json["errors"]
    ]


@pytest.mark.parametrize("max_results", ["0", "51", "ten", None])
async def test_max_results_is_required_and_at_most_50(
    quo: tuple[QuoSim, SimApi], max_results: str | None
) -> None:
    _, api = quo
    params = {} if max_results is None else {"maxResults": max_results}
    response = await api.get("/contacts", params=params)
    assert response.status == 400
    assert response.json["errors"][0]["path"] == "/maxResults"


async def test_forged_page_token_is_400(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    response = await api.get("/contacts", params={"maxResults": "5", "pageToken": "%%%"})
    assert response.status == 400


async def test_paginates_until_null_token_and_total_is_inaccurate(
    quo: tuple[QuoSim, SimApi],
) -> None:
    sim, api = quo
    created = [sim.contacts.create(contact_body(f"p-{i}"))["id"] for i in range(120)]
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        params = {"maxResults": "50"} | ({"pageToken": token} if token else {})
        response = await api.get("/contacts", params=params)
        assert response.status == 200
        assert response.json["totalItems"] != 120
        seen += [c["id"] for c in response.json["data"]]
        pages += 1
        token = response.json["nextPageToken"]
        if token is None:
            break
    assert pages == 3
    assert seen == created


async def test_deleting_between_pages_skips_nothing(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    ids = [sim.contacts.create(contact_body(f"d-{i}"))["id"] for i in range(10)]
    first = await api.get("/contacts", params={"maxResults": "4"})
    assert [c["id"] for c in first.json["data"]] == ids[:4]
    assert sim.contacts.delete(ids[0]) and sim.contacts.delete(ids[1])
    rest = await api.get(
        "/contacts", params={"maxResults": "50", "pageToken": first.json["nextPageToken"]}
    )
    assert [c["id"] for c in rest.json["data"]] == ids[4:]


async def test_sources_filter_is_loose(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    sim.contacts.create(contact_body("1", source="attio"))
    sim.contacts.create(contact_body("2", source="attio-eu"))
    sim.contacts.create(contact_body("3", source="pipedrive"))
    response = await api.get("/contacts", params={"sources": "attio", "maxResults": "50"})
    assert sorted(c["source"] for c in response.json["data"]) == ["attio", "attio-eu"]


# -- get / patch / delete -----------------------------------------------------------------


async def test_patch_replaces_arrays_and_keeps_absent_scalars(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    body = contact_body("r-1", phones=["+14155550100"], emails=["a@example.com"])
    body["defaultFields"]["company"] = "Analytical Engines"
    created = (await api.post("/contacts", json=body)).json["data"]
    phone = created["defaultFields"]["phoneNumbers"][0]
    patch = {"defaultFields": {"firstName": "Augusta", "phoneNumbers": [phone]}}
    response = await api.patch(f"/contacts/{created['id']}", json=patch)
    assert response.status == 200
    updated = response.json["data"]
    fields = updated["defaultFields"]
    assert fields["firstName"] == "Augusta"
    assert fields["lastName"] == "Lovelace" and fields["company"] == "Analytical Engines"
    assert fields["emails"] == []  # omitted from the PATCH: deleted
    assert fields["phoneNumbers"] == [phone]  # same id kept
    assert updated["externalId"] == "r-1" and updated["source"] == "attio"
    fetched = await api.get(f"/contacts/{created['id']}")
    assert fetched.json["data"] == updated


async def test_patch_without_default_fields_deletes_phones(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    created = (await api.post("/contacts", json=contact_body("r-2", phones=["+14155550100"])))
    contact_id = created.json["data"]["id"]
    response = await api.patch(f"/contacts/{contact_id}", json={"sourceUrl": "https://x.example/2"})
    assert response.status == 200
    assert response.json["data"]["defaultFields"]["phoneNumbers"] == []
    assert response.json["data"]["defaultFields"]["firstName"] == "Ada"


async def test_patch_null_value_removes_item(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    created = await api.post("/contacts", json=contact_body("r-3", phones=["+14155550100"]))
    contact = created.json["data"]
    phone = contact["defaultFields"]["phoneNumbers"][0]
    patch = {"defaultFields": {"phoneNumbers": [phone | {"value": None}]}}
    response = await api.patch(f"/contacts/{contact['id']}", json=patch)
    assert response.json["data"]["defaultFields"]["phoneNumbers"] == []


async def test_patch_errors(quo: tuple[QuoSim, SimApi]) -> None:
    _, api = quo
    missing = await api.patch("/contacts/deadbeef", json={"defaultFields": {"firstName": "X"}})
    assert missing.status == 404 and missing.json["code"] == "0800404"
    a = (await api.post("/contacts", json=contact_body("taken"))).json["data"]
    b = (await api.post("/contacts", json=contact_body("free"))).json["data"]
    bad_phone = {"defaultFields": {"phoneNumbers": [{"name": "m", "value": "12"}]}}
    assert (await api.patch(f"/contacts/{a['id']}", json=bad_phone)).status == 400
    conflict = await api.patch(f"/contacts/{b['id']}", json={"externalId": "taken"})
    assert conflict.status == 409
    same = await api.patch(f"/contacts/{a['id']}", json={"externalId": "taken"})
    assert same.status == 200


async def test_get_and_delete(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    contact = (await api.post("/contacts", json=contact_body("del-1"))).json["data"]
    assert (await api.get(f"/contacts/{contact['id']}")).json["data"] == contact
    deleted = await api.delete(f"/contacts/{contact['id']}")
    assert deleted.status == 204 and deleted.body == b""
    assert (await api.get(f"/contacts/{contact['id']}")).status == 404
    assert (await api.delete(f"/contacts/{contact['id']}")).status == 404
    # The externalId is free again once its contact is gone.
    assert (await api.post("/contacts", json=contact_body("del-1"))).status == 201
    assert sim.count("DELETE", "/v1/contacts/{id}") == 2


async def test_unknown_route_is_404_quo_style(quo: tuple[QuoSim, SimApi]) -> None:
    sim, api = quo
    response = await api.get("/no-such-thing")
    assert response.status == 404
    assert response.json["code"] == "0800404"
    assert sim.count("GET", "<unmatched>", 404) == 1
