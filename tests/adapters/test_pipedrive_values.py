"""Pipedrive's pure parts: cursors, persons, write bodies, phones, webhook credentials,
Basic-auth checks and payload parsing (no I/O; the adapter against the simulator is in
test_pipedrive.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from crmsync.adapters import pipedrive_values as pv
from crmsync.adapters.base import (
    CrmChange,
    CrmRecord,
    PersonChanges,
    WebhookFormatError,
    WebhookSignatureError,
)
from crmsync.adapters.pipedrive_webhooks import (
    check_basic_auth,
    credentials,
    parse_event,
    plan_hooks,
)

# -- cursors and times -----------------------------------------------------------------


@pytest.mark.parametrize("listing", [
    pv.Listing(None, None), pv.Listing(None, "eyJpZCI6N30="),
    pv.Listing("2025-01-01T10:20:00Z", None), pv.Listing("2025-01-01T10:20:00Z", "abc|d"),
])
def test_cursors_round_trip(listing: pv.Listing) -> None:
    encoded = pv.encode_cursor(listing)
    assert pv.decode_cursor(encoded) == listing
    assert pv.decode_cursor(None) == pv.Listing(None, None)


@pytest.mark.parametrize("cursor", ["", "17", "a", "c|", "c||x", "c|2025", "x|abc"])
def test_a_cursor_this_adapter_never_made_is_a_value_error(cursor: str) -> None:
    with pytest.raises(ValueError, match="not a Pipedrive listing cursor"):
        pv.decode_cursor(cursor)


def test_times() -> None:
    assert pv.rfc3339(1735726800.9) == "2025-01-01T10:20:00Z"  # rounded down
    assert pv.v1_time("2025-01-01T10:20:00Z") == "2025-01-01 10:20:00"
    assert pv.v1_time("2025-01-01T12:20:00.5+02:00") == "2025-01-01 10:20:00"
    assert pv.v1_time("2025-01-01T10:20:00") == "2025-01-01 10:20:00"  # naive: UTC
    assert pv.v1_time(None) is None
    assert pv.v1_time("yesterday") is None


# -- persons ---------------------------------------------------------------------------


def record(raw: dict[str, Any], **related: str) -> CrmRecord:
    return CrmRecord(crm_object="people", record_id=str(raw["id"]), raw=raw, related=related)


def test_person_primary_entries_first_labels_and_region() -> None:
    raw = {
        "id": 7, "name": "Ada Lovelace", "first_name": "Ada", "last_name": " Lovelace ",
        "job_title": "CTO", "org_id": 3,
        "emails": [{"value": "b@x.com", "primary": False, "label": "home"},
                   {"value": "a@x.com", "primary": True, "label": "work"},
                   {"value": "", "primary": False, "label": "other"}, "junk"],
        "phones": [{"value": "(555) 867-5309", "primary": False, "label": "mobile"},
                   {"value": "+44 20 7946 0018", "primary": True}],
    }
    person = pv.person(record(raw, company="Acme", region="US",
                              web_url="https://acme.pipedrive.com/person/7"))
    assert (person.first_name, person.last_name, person.full_name) == (
        "Ada", "Lovelace", "Ada Lovelace")
    assert [(e.value, e.label) for e in person.emails] == [("a@x.com", "work"),
                                                           ("b@x.com", "home")]
    assert [(p.raw, p.label, p.country_code) for p in person.phones] == [
        ("+44 20 7946 0018", "other", "US"), ("(555) 867-5309", "mobile", "US")]
    assert all(p.e164 is None for p in person.phones)  # the shared transform parses
    assert (person.job_title, person.company) == ("CTO", "Acme")
    assert person.web_url == "https://acme.pipedrive.com/person/7"


def test_person_without_optional_values() -> None:
    person = pv.person(record({"id": 8, "name": "X", "emails": None, "phones": {}}))
    assert person.emails == () and person.phones == () and person.company is None
    assert person.job_title is None and person.web_url is None


def test_ids_and_regions() -> None:
    assert pv.person_id({"id": 5}) == "5"
    assert pv.person_id({"id": True}) is None and pv.person_id({"id": "5"}) is None
    assert pv.org_id({"org_id": {"value": 3}}) is None and pv.org_id({"org_id": 3}) == 3
    assert pv.region("si") == "SI" and pv.region("Slovenia") is None and pv.region(None) is None
    assert pv.web_url("acme", "7") == "https://acme.pipedrive.com/person/7"
    assert pv.web_url(None, "7") == "https://app.pipedrive.com/person/7"


# -- write bodies ----------------------------------------------------------------------


def test_person_body_sets_what_changes_names() -> None:
    changes = PersonChanges(first_name="Ada", last_name=None, job_title=None, company="Acme",
                            emails=("a@x.com", "a@x.com", "b@x.com"), phones=("+15558675309",))
    assert pv.person_body(changes, 12, create=False) == {
        "name": "Ada", "first_name": "Ada", "last_name": None, "job_title": None,
        "org_id": 12,
        "emails": [{"value": "a@x.com", "primary": True, "label": "work"},
                   {"value": "b@x.com", "primary": False, "label": "other"}],
        "phones": [{"value": "+15558675309", "primary": True, "label": "mobile"}],
    }
    assert pv.person_body(PersonChanges(company=None, phones=()), None, create=False) == {
        "org_id": None, "phones": []}


def test_a_person_keeps_a_name_pipedrive_cannot_do_without() -> None:
    cleared = PersonChanges(first_name=None, last_name="", emails=("a@x.com",))
    assert "name" not in pv.person_body(cleared, None, create=False)
    assert pv.person_body(cleared, None, create=True)["name"] == "a@x.com"
    phone_only = PersonChanges(phones=("+15558675309",))
    assert pv.person_body(phone_only, None, create=True)["name"] == "+15558675309"


# -- phones ----------------------------------------------------------------------------


def test_search_terms_cover_how_numbers_are_typed() -> None:
    assert pv.search_terms("+15558675309") == ["15558675309", "5558675309"]
    assert pv.search_terms("+442079460018") == ["442079460018", "02079460018", "2079460018"]
    assert pv.search_terms("not a number") == []


@pytest.mark.parametrize(("typed", "country", "same"), [
    ("+1 (555) 867-5309", None, True), ("(555) 867-5309", "US", True),
    ("555.867.5309", "US", True), ("(555) 867-5309", "GB", False),
    ("555-867-5310", "US", False), ("call me", "US", False),
])
def test_same_number(typed: str, country: str | None, same: bool) -> None:
    assert pv.same_number(typed, "+15558675309", country) is same


def test_error_body() -> None:
    body = b'{"success":false,"error":"Validation failed: limit: too big","errorCode":400}'
    assert pv.error_body(body) == ("Validation failed: limit: too big", "400")
    assert pv.error_body(b"<html>Cloudflare</html>") == ("<html>Cloudflare</html>", None)
    assert pv.error_body(b"") == ("no body", None)


# -- webhook credentials and checks ----------------------------------------------------

URL = "https://sync.example.com/webhooks/t1/crm"


def test_credentials_are_derived_from_the_key_and_the_url() -> None:
    creds = credentials("key-1", URL)
    assert creds == credentials("key-1", URL)
    assert len(creds.password) == 40 and creds.user.startswith("crmsync-")
    assert credentials("key-2", URL).user != creds.user  # a rotated key is noticed
    assert credentials("key-1", URL + "x").password != creds.password
    assert creds.secret == f"{creds.user}:{creds.password}"


def hook(ident: int, **fields: Any) -> dict[str, Any]:
    return {"id": ident, "subscription_url": URL, "event_action": "*",
            "event_object": "person", "is_active": 1, "http_auth_user": "u",
            "http_auth_password": "*****", **fields}


def test_plan_hooks_reuses_ours_and_deletes_the_others_on_our_url() -> None:
    hooks = [
        hook(1, http_auth_user="old"), hook(2, is_active=0), hook(3), hook(4),
        hook(5, event_action="change"), hook(6, subscription_url="https://other/"),
        hook(7, event_object="*"), {"subscription_url": URL},
    ]
    plan = plan_hooks(hooks, URL, "u")
    assert plan.keep == "3"
    assert plan.delete == ["1", "2", "4", "5", "7"]
    assert plan_hooks([hook(1, http_auth_user="old")], URL, "u") == (None, ["1"])
    assert plan_hooks([hook(9, event_object="*", is_active=True)], URL, "u").keep == "9"


def basic(value: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(value).decode()}


def test_basic_auth_good_and_case_insensitive_header() -> None:
    check_basic_auth(basic(b"user:pw"), "user:pw")
    check_basic_auth({"authorization": "basic " + base64.b64encode(b"user:pw").decode()},
                     "user:pw")


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": ""}, {"Authorization": "Bearer dXNlcjpwdw=="},
    {"Authorization": "Basic not*base64"}, {"Authorization": "Basic dXNlcjpwdw=é"},
    basic(b"user:other"), basic("usér:pw".encode()), basic(b"user:pw\n"),
], ids=["missing", "empty", "bearer", "not-base64", "non-ascii-header", "wrong",
        "non-ascii-credentials", "longer"])
def test_basic_auth_refused(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookSignatureError):
        check_basic_auth(headers, "user:pw")


# -- webhook payloads ------------------------------------------------------------------


def v2(action: str, entity: str = "person", entity_id: Any = "123", **meta: Any) -> bytes:
    data = None if action == "delete" else {"id": 123, "name": "Ada"}
    return json.dumps({
        "data": data, "previous": None,
        "meta": {"action": action, "entity": entity, "entity_id": entity_id,
                 "id": "0b9d8f0e-event", "attempt": 1, "version": "2.0", **meta},
    }).encode()


@pytest.mark.parametrize(("action", "kind"), [
    ("create", "created"), ("change", "updated"), ("delete", "deleted"),
])
def test_v2_person_events(action: str, kind: str) -> None:
    event = parse_event(v2(action))
    assert event.event_id == "0b9d8f0e-event"
    assert event.event_type == f"{action}.person"
    assert event.changes == [CrmChange(crm_object="people", record_id="123", kind=kind)]


def test_v2_other_entities_are_events_without_changes() -> None:
    event = parse_event(v2("change", "deal"))
    assert event.changes == [] and event.event_type == "change.deal"
    assert parse_event(v2("archive")).changes == []  # an action we do not know


def test_v2_event_id_falls_back_to_a_hash_that_ignores_the_attempt() -> None:
    first, retry = parse_event(v2("change", id="", attempt=1)), parse_event(
        v2("change", id="", attempt=2))
    assert first.event_id == retry.event_id and len(first.event_id) == 64
    assert parse_event(v2("change", id="")).event_id != parse_event(
        v2("change", id="", timestamp="x")).event_id


def test_v2_id_from_the_data_when_the_meta_lacks_it() -> None:
    assert parse_event(v2("change", entity_id=None)).changes[0].record_id == "123"


def v1(event: str, person: int = 11, **extra: Any) -> bytes:
    payload: dict[str, Any] = {
        "v": 1, "event": event, "retry": 0,
        "meta": {"action": event.split(".")[0], "object": "person", "id": person,
                 "timestamp_micro": 1739827618595189, "v": 1},
        "current": {"id": person, "name": "P"}, "previous": None, **extra,
    }
    return json.dumps(payload).encode()


@pytest.mark.parametrize(("event", "kind"), [
    ("added.person", "created"), ("updated.person", "updated"),
    ("deleted.person", "deleted"),
])
def test_v1_person_events(event: str, kind: str) -> None:
    parsed = parse_event(v1(event))
    assert parsed.event_type == event
    assert parsed.changes == [CrmChange(crm_object="people", record_id="11", kind=kind)]
    # meta.id is the person's: the event id is the payload's hash, the same on retries
    assert len(parsed.event_id) == 64
    assert parse_event(v1(event, retry=3)).event_id == parsed.event_id


def test_v1_merge_names_the_duplicate() -> None:
    body = json.loads(v1("merged.person"))
    body["current"]["merge_what_id"] = 12
    (change,) = parse_event(json.dumps(body).encode()).changes
    assert (change.kind, change.record_id, change.merged_from) == ("merged", "11", "12")
    body = json.loads(v1("merged.person", previous={"id": 13}))
    assert parse_event(json.dumps(body).encode()).changes[0].merged_from == "13"
    assert parse_event(v1("merged.person", previous={"id": 11})).changes[0].merged_from \
        is None
    assert parse_event(v1("updated.organization")).changes == []


@pytest.mark.parametrize("body", [
    b"not json", b"[]", b'{"data": {}}', b'{"meta": []}', b'{"meta": {"action": "change"}}',
    b'{"meta": {"action": "change", "entity": "person", "entity_id": "abc"}, "data": null}',
    b'{"event": "updated.person", "meta": {}, "current": null}', b"[" * 100_000,
], ids=["not-json", "a-list", "no-meta", "meta-not-object", "no-entity", "no-person-id",
        "v1-no-person-id", "too-deep"])
def test_malformed_payloads(body: bytes) -> None:
    with pytest.raises(WebhookFormatError):
        parse_event(body)
