"""The HubSpot adapter's pure parts: listing cursors, the v3 signature, event batches,
contact values and phone matching (no simulator, no socket)."""

from __future__ import annotations

import hashlib
import json

import msgspec
import pytest

from crmsync.adapters import hubspot_search as search
from crmsync.adapters.base import (
    CrmChange,
    CrmRecord,
    PersonChanges,
    WebhookFormatError,
    WebhookSignatureError,
)
from crmsync.adapters.hubspot_values import (
    error_body,
    has_phone,
    person,
    person_properties,
    phone_filter_groups,
)
from crmsync.adapters.hubspot_webhooks import decode_uri, parse, signature, verify

# -- cursors -----------------------------------------------------------------------------


def seen(*pairs: tuple[int, int]) -> list[search.Seen]:
    return [search.Seen(str(record_id), at) for record_id, at in pairs]


def test_a_cursor_survives_encoding_and_a_foreign_one_is_a_value_error() -> None:
    cursor = search.Cursor(sweep="created", bound=1_700_000_000_000, after=3)
    text = search.encode_cursor(cursor)
    assert json.loads(text) == {"sweep": "created", "bound": 1_700_000_000_000, "after": 3}
    assert search.decode_cursor(text) == cursor
    for foreign in ("200", "a|xyz", '{"sweep": "deals"}', '{"sweep": "created", "after": -1}',
                    '{"sweep": "created", "tie": true}', ""):
        with pytest.raises(ValueError, match="not a HubSpot listing cursor"):
            search.decode_cursor(foreign)


def test_the_full_listing_is_newest_first_without_a_filter() -> None:
    cursor, limit = search.plan(search.full_listing(), 500)
    assert limit == 200
    body = search.search_body(cursor, limit, ["email"])
    assert body == {"sorts": [{"propertyName": "createdate", "direction": "DESCENDING"}],
                    "properties": ["email"], "limit": 200}


def test_each_page_starts_a_window_at_its_last_value_skipping_only_its_ties() -> None:
    """1. a page of 4 ending with two records at instant 70 2. the next window is
    `createdate LTE 70` skipping those 2 3. a page entirely at 70 skips further into it."""
    first = search.advance(search.full_listing(), seen((9, 90), (8, 80), (7, 70), (6, 70)),
                           has_next=True)
    assert first == search.Cursor(sweep="created", bound=70, after=2)
    body = search.search_body(first, 4, [])
    assert body["filterGroups"] == [{"filters": [
        {"propertyName": "createdate", "operator": "LTE", "value": "70"}]}]
    assert body["after"] == "2"
    second = search.advance(first, seen((5, 70), (4, 70)), has_next=True)
    assert second == search.Cursor(sweep="created", bound=70, after=4)
    third = search.advance(second, seen((3, 70), (2, 60)), has_next=True)
    assert third == search.Cursor(sweep="created", bound=60, after=1)
    assert search.advance(third, seen((1, 50)), has_next=False) is None


def test_more_records_at_one_instant_than_one_query_reaches_are_listed_by_id() -> None:
    """1. a window at instant t whose offset would pass 10,000 2. plan() lists the instant
    on its own, by id, newest id first 3. keyset pages by `hs_object_id LT` 4. when the
    instant is exhausted the sweep goes on strictly below it."""
    crowded = search.Cursor(sweep="created", bound=70, after=search.SEARCH_CAP - 100)
    tie, limit = search.plan(crowded, 200)
    assert tie == search.Cursor(sweep="created", bound=70, tie=True)
    body = search.search_body(tie, limit, [])
    assert body["sorts"] == [{"propertyName": "hs_object_id", "direction": "DESCENDING"}]
    assert body["filterGroups"] == [{"filters": [
        {"propertyName": "createdate", "operator": "EQ", "value": "70"}]}]
    assert "after" not in body
    nxt = search.advance(tie, seen((900, 70), (899, 70)), has_next=True)
    assert nxt == search.Cursor(sweep="created", bound=70, tie=True, last_id="899")
    assert search.search_body(nxt, 2, [])["filterGroups"][0]["filters"][1] == {
        "propertyName": "hs_object_id", "operator": "LT", "value": "899"}
    below = search.advance(nxt, seen((898, 70)), has_next=False)
    assert below == search.Cursor(sweep="created", bound=70, strict=True)
    assert search.search_body(below, 2, [])["filterGroups"][0]["filters"] == [
        {"propertyName": "createdate", "operator": "LT", "value": "70"}]
    assert search.plan(nxt, 200)[0] == nxt  # by id no offset grows


def test_changes_are_listed_oldest_first_from_the_instant() -> None:
    cursor = search.changed_since(1_700_000_000.9876)
    assert cursor == search.Cursor(sweep="modified", bound=1_700_000_000_987)
    body = search.search_body(cursor, 50, [])
    assert body["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert body["filterGroups"][0]["filters"] == [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": "1700000000987"}]
    nxt = search.advance(cursor, seen((5, 1_700_000_001_000), (3, 1_700_000_002_000)), True)
    assert nxt == search.Cursor(sweep="modified", bound=1_700_000_002_000, after=1)
    tie = search.plan(search.Cursor(sweep="modified", bound=5, after=9_900), 200)[0]
    assert search.search_body(tie, 200, [])["sorts"][0]["direction"] == "ASCENDING"
    assert search.advance(tie, seen((7, 5)), True) == search.Cursor(
        sweep="modified", bound=5, tie=True, last_id="7")
    assert search.advance(search.Cursor(sweep="modified", bound=5, tie=True, last_id="7"),
                          [], False) == search.Cursor(sweep="modified", bound=5, strict=True)


@pytest.mark.parametrize(
    ("cursor", "page"),
    [
        (search.full_listing(), []),  # "more follow" without results
        (search.Cursor(sweep="created", bound=70), seen((1, 80))),  # outside the window
        (search.Cursor(sweep="created", bound=70, strict=True), seen((1, 70))),
        (search.Cursor(sweep="modified", bound=70), seen((1, 60))),
        (search.Cursor(sweep="created", bound=7, tie=True, last_id="50"), seen((60, 7))),
    ],
    ids=["empty-with-next", "above-bound", "at-strict-bound", "before-since", "id-backwards"],
)
def test_a_page_that_cannot_move_the_listing_on_is_an_error(
    cursor: search.Cursor, page: list[search.Seen]
) -> None:
    with pytest.raises(search.AnswerError):
        search.advance(cursor, page, has_next=True)


def test_times_read_as_epoch_ms() -> None:
    assert search.epoch_ms("2025-01-01T10:00:00.123Z") == 1_735_725_600_123
    assert search.epoch_ms("1735725600123") == 1_735_725_600_123
    assert search.epoch_ms("2025-01-01T10:00:00Z") == 1_735_725_600_000
    assert search.epoch_ms(None) is None and search.epoch_ms("soon") is None


# -- signature v3 -----------------------------------------------------------------------

SECRET = "app-secret"
URL = "https://sync.example.com/webhooks/acme/crm?x=a%3Ab"
BODY = b'[{"eventId":1,"subscriptionType":"contact.creation","objectId":501}]'
STAMP = "1700000000000"
#: printf '%s' 'POSThttps://sync.example.com/webhooks/acme/crm?x=a:b<BODY>1700000000000'
#:   | openssl dgst -sha256 -hmac app-secret -binary | base64
KNOWN = "X3X5alP2zJLQ8kH0RM9UK8wJEwp40PUfT5krEx4fd60="
NOW = 1_700_000_000.0


def headers(sig: str = KNOWN, stamp: str = STAMP) -> dict[str, str]:
    return {"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": stamp,
            "X-HubSpot-Signature-Version": "v3"}


def test_the_signature_matches_a_vector_computed_with_openssl() -> None:
    assert signature(SECRET, "POST", URL, BODY, STAMP) == KNOWN
    verify(headers(), BODY, SECRET, method="POST", url=URL, now=NOW)
    lower = {k.lower(): v for k, v in headers().items()}  # any header case
    verify(lower, BODY, SECRET, method="POST", url=URL, now=NOW + 299)


def test_only_the_listed_escapes_are_decoded() -> None:
    assert decode_uri("https://h/p%3a%2F%3F%40%21%24%27%28%29%2A%2C%3B") == \
        "https://h/p:/?@!$'()*,;"
    assert decode_uri("https://h/a%20b%25c%2Bd") == "https://h/a%20b%25c%2Bd"


@pytest.mark.parametrize(
    ("given", "body", "secret", "now", "method"),
    [
        (headers(), BODY, SECRET, NOW + 301, "POST"),  # stale
        (headers(), BODY, SECRET, NOW - 301, "POST"),  # from the future
        (headers(), BODY, "other-secret", NOW, "POST"),  # wrong secret
        (headers(), BODY + b" ", SECRET, NOW, "POST"),  # tampered body
        (headers(), BODY, SECRET, NOW, "PUT"),  # another method
        ({"X-HubSpot-Request-Timestamp": STAMP}, BODY, SECRET, NOW, "POST"),  # no signature
        ({"X-HubSpot-Signature-v3": KNOWN}, BODY, SECRET, NOW, "POST"),  # no timestamp
        (headers(stamp="17e11"), BODY, SECRET, NOW, "POST"),  # garbled timestamp
        (headers(stamp="9" * 400), BODY, SECRET, NOW, "POST"),  # absurd timestamp
        (headers(stamp="\u0661" * 13), BODY, SECRET, NOW, "POST"),  # non-ASCII digits
        (headers(sig="é" * 44), BODY, SECRET, NOW, "POST"),  # non-ASCII signature
        (headers(sig="\udcff" * 44), BODY, SECRET, NOW, "POST"),  # a lone surrogate
        (headers(sig=KNOWN[:-1] + "\N{SNOWMAN}"), BODY, SECRET, NOW, "POST"),
        (headers(sig=""), BODY, SECRET, NOW, "POST"),
    ],
    ids=["stale", "future", "wrong-secret", "tampered", "method", "no-signature",
         "no-timestamp", "garbled-timestamp", "absurd-timestamp", "arabic-digits",
         "non-ascii", "surrogate", "snowman", "empty"],
)
def test_verify_refuses_with_a_signature_error_only(
    given: dict[str, str], body: bytes, secret: str, now: float, method: str
) -> None:
    with pytest.raises(WebhookSignatureError):
        verify(given, body, secret, method=method, url=URL, now=now)


def test_a_url_that_cannot_be_encoded_is_a_signature_error() -> None:
    with pytest.raises(WebhookSignatureError):
        verify(headers(), BODY, SECRET, method="POST", url="https://h/\udcff", now=NOW)


# -- event batches ---------------------------------------------------------------------


def event(kind: str, object_id: int = 501, **extra: object) -> dict[str, object]:
    return {"eventId": 100 + object_id, "subscriptionId": 1234, "portalId": 62515,
            "appId": 98765, "occurredAt": 1_711_234_567_890, "subscriptionType": kind,
            "attemptNumber": 0, "objectId": object_id, "changeSource": "CRM_UI", **extra}


def changes(*events: dict[str, object]) -> list[CrmChange]:
    return parse(json.dumps(list(events)).encode()).changes


def change(record_id: str, kind: str, merged_from: str | None = None) -> CrmChange:
    return CrmChange(crm_object="people", record_id=record_id, kind=kind,
                     merged_from=merged_from)


def test_every_contact_event_kind_is_read() -> None:
    assert changes(
        event("contact.creation", 1), event("contact.propertyChange", 2,
                                             propertyName="jobtitle", propertyValue="CTO"),
        event("contact.restore", 3), event("contact.associationChange", 4),
        event("contact.deletion", 5), event("contact.privacyDeletion", 6),
    ) == [change("1", "created"), change("2", "updated"), change("3", "updated"),
          change("4", "updated"), change("5", "deleted"), change("6", "deleted")]


def test_a_merge_names_the_survivor_and_each_merged_record() -> None:
    merged = event("contact.merge", 10, primaryObjectId=10, mergedObjectIds=[11, 12, 10],
                   newObjectId=10)
    assert changes(merged) == [change("10", "merged", "11"), change("10", "merged", "12")]
    new_only = event("contact.merge", 20, mergedObjectIds=[21], newObjectId=22)
    assert changes(new_only) == [change("22", "merged", "21")]


def test_generic_object_events_count_for_contacts_only() -> None:
    assert changes(
        event("object.creation", 7, objectTypeId="0-1"),
        event("object.propertyChange", 8, objectTypeId="0-2"),
        event("company.creation", 9), event("deal.deletion", 10),
        event("contact.unknownThing", 11),
    ) == [change("7", "created")]


def test_events_of_one_record_and_kind_collapse_to_one_change() -> None:
    assert changes(
        event("contact.propertyChange", 1, propertyName="phone"),
        event("contact.propertyChange", 1, propertyName="email"),
        event("contact.creation", 1),
    ) == [change("1", "updated"), change("1", "created")]


def test_a_retry_of_the_same_events_has_the_same_event_id() -> None:
    first = [event("contact.creation", 1), event("contact.deletion", 2)]
    retry = [{**e, "attemptNumber": 1} for e in reversed(first)]
    one = parse(json.dumps(first).encode())
    assert one.event_id == parse(json.dumps(retry, indent=2).encode()).event_id
    assert one.event_id.startswith("hs-") and one.event_type == "contact.creation"
    other = parse(json.dumps([event("contact.creation", 3)]).encode())
    assert other.event_id != one.event_id
    assert one.event_id != "hs-" + hashlib.sha256(json.dumps(first).encode()).hexdigest()


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"events": []}', b"[]", b"[1, 2]", b'["contact.creation"]', b"null",
     b"[" * 100_000],
    ids=["not-json", "object", "empty", "numbers", "strings", "null", "deep"],
)
def test_a_body_hubspot_would_not_send_is_a_format_error(body: bytes) -> None:
    with pytest.raises(WebhookFormatError):
        parse(body)


# -- contact values --------------------------------------------------------------------


def record(**props: str | None) -> CrmRecord:
    return CrmRecord(crm_object="people", record_id="501",
                     raw={"id": "501", "properties": props},
                     related={"web_url": "https://app.hubspot.com/contacts/1/record/0-1/501"})


def test_a_contact_becomes_a_person() -> None:
    got = person(record(
        firstname="Ada", lastname="Lovelace", email="ada@example.com",
        hs_additional_emails="ada@work.example;  ;ADA@example.com;a2@example.com",
        phone="040 123 456", mobilephone="+1 555 867 5309", jobtitle=" CTO ",
        company="Typed Inc", hs_country_region_code="si",
    ))
    assert (got.first_name, got.last_name, got.job_title) == ("Ada", "Lovelace", "CTO")
    assert [e.value for e in got.emails] == ["ada@example.com", "ada@work.example",
                                             "a2@example.com"]
    assert [(p.label, p.raw, p.country_code) for p in got.phones] == [
        ("work", "040 123 456", "SI"), ("mobile", "+1 555 867 5309", "SI")]
    assert got.company == "Typed Inc"  # no associated company: the text property
    assert got.web_url == "https://app.hubspot.com/contacts/1/record/0-1/501"
    empty = person(CrmRecord(crm_object="people", record_id="1", raw={"id": "1"}))
    assert empty.emails == () and empty.phones == () and empty.company is None


def test_changes_become_properties_and_empty_values_clear() -> None:
    assert person_properties(PersonChanges(
        first_name="Ada", last_name=None, job_title=None, company=" Acme ",
        emails=("a@x.example", "b@x.example", "a@x.example", "c@x.example"),
        phones=("+38640123456", "+15558675309", "+38641000000"),
    )) == {"firstname": "Ada", "lastname": "", "jobtitle": "", "company": "Acme",
           "email": "a@x.example", "hs_additional_emails": "b@x.example;c@x.example",
           "phone": "+38640123456", "mobilephone": "+15558675309"}
    assert person_properties(PersonChanges(emails=(), phones=("+38640123456",), company=None)
                             ) == {"email": "", "hs_additional_emails": "", "phone":
                                   "+38640123456", "mobilephone": "", "company": ""}
    assert person_properties(PersonChanges()) == {}


def test_phone_search_covers_the_typed_forms_in_at_most_five_groups() -> None:
    groups = phone_filter_groups("+38640123456")
    forms = ["+38640123456", "040123456", "40123456", "+386 40 123 456", "040 123 456"]
    assert groups == [
        {"filters": [{"propertyName": "phone", "operator": "IN", "values": forms}]},
        {"filters": [{"propertyName": "mobilephone", "operator": "IN", "values": forms}]},
        {"filters": [{"propertyName": "phone", "operator": "CONTAINS_TOKEN",
                      "value": "*40123456"}]},
        {"filters": [{"propertyName": "mobilephone", "operator": "CONTAINS_TOKEN",
                      "value": "*40123456"}]},
    ]
    us = phone_filter_groups("+15558675309")[0]["filters"][0]["values"]
    assert us == ["+15558675309", "5558675309", "+1 555-867-5309", "(555) 867-5309"]
    assert phone_filter_groups("not a number") == []


def test_a_hit_counts_only_when_its_number_is_the_one_asked_for() -> None:
    national = {"id": "1", "properties": {"phone": "040 123 456",
                                          "hs_country_region_code": "si"}}
    assert has_phone(national, "+38640123456")
    assert not has_phone({**national, "properties": {"phone": "040 123 456"}},
                         "+38640123456")  # no region: a national number is unreadable
    mobile = {"id": "2", "properties": {"phone": "junk", "mobilephone": "+386 40 123 456"}}
    assert has_phone(mobile, "+38640123456") and not has_phone(mobile, "+38640123457")


def test_error_bodies_give_the_message_and_category_or_policy() -> None:
    assert error_body(msgspec.json.encode({
        "status": "error", "message": "Contact already exists. Existing ID: 501",
        "category": "CONFLICT", "correlationId": "x"})) == (
        "Contact already exists. Existing ID: 501", "CONFLICT")
    assert error_body(b'{"message": "You have reached your ten_secondly_rolling limit.",'
                      b'"errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}')[1] \
        == "TEN_SECONDLY_ROLLING"
    assert error_body(b"<html>") == ("<html>", None)
