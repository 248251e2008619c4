"""Every adapter's webhook verification and parsing against deliveries of any shape.

A CRM webhook is answered from what `verify_webhook` and `parse_webhook` raise: a
`WebhookSignatureError` is a 401, a `WebhookFormatError` a 400, anything else would be
a 500 and a sender retrying for days. So, for every CRM, with hypothesis:

* `verify_webhook` on arbitrary headers (signature headers of any text, missing,
  non-ASCII, garbled base64, odd timestamps) returns or raises `WebhookSignatureError`;
* a delivery signed correctly, the CRM's way, verifies;
* `parse_webhook` on any body (bytes, JSON of any shape, near-valid payloads) returns
  a `WebhookEvent` whose id is a non-empty string and whose changes are of the known
  kinds with string record ids, or raises `WebhookFormatError`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st
from support.fuzz import JSON, TEXT

from crmsync.adapters.base import (
    CrmAdapter,
    WebhookEvent,
    WebhookFormatError,
    WebhookSignatureError,
)
from crmsync.adapters.hubspot_webhooks import signature as hubspot_signature
from crmsync.adapters.registry import ADAPTERS

pytestmark = pytest.mark.asyncio(loop_scope="module")

FUZZ = settings(max_examples=150, deadline=None, database=None)
URL = "https://sync.example.com/webhooks/acme/crm"
SECRET = "user-crmsync:pass-0123456789abcdef"
KINDS = {"created", "updated", "deleted", "merged"}

HEADER_NAMES = st.sampled_from([
    "Attio-Signature", "X-Attio-Signature", "Authorization", "X-HubSpot-Signature-v3",
    "X-HubSpot-Request-Timestamp", "X-HubSpot-Signature-Version", "Content-Type",
])
HEADER_VALUES = st.one_of(
    TEXT,
    st.just(""),
    st.builds(lambda s: "Basic " + base64.b64encode(s.encode()).decode(), TEXT),
    st.builds(lambda s: "Basic " + s, TEXT),
    st.integers().map(str),
    st.just("Basic " + base64.b64encode(SECRET.encode()).decode() + "=="),
)
HEADERS = st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=5)


def near_valid(crm: str) -> st.SearchStrategy[Any]:
    """Payloads close to what the CRM sends, with any part of any shape."""
    if crm == "attio":
        event = st.fixed_dictionaries({"event_type": st.one_of(
            st.sampled_from(["record.created", "record.updated", "record.deleted",
                             "record.merged", "note.created"]), TEXT),
            "id": st.one_of(JSON, st.fixed_dictionaries({"record_id": JSON}))})
        return st.fixed_dictionaries({"webhook_id": JSON, "events": st.one_of(
            st.lists(event, max_size=3), JSON)})
    if crm == "pipedrive":
        meta = st.fixed_dictionaries({
            "action": st.one_of(st.sampled_from(["create", "change", "delete"]), JSON),
            "entity": st.one_of(st.just("person"), JSON),
            "entity_id": st.one_of(st.integers().map(str), JSON),
            "id": JSON,
        })
        return st.fixed_dictionaries({"meta": st.one_of(meta, JSON), "data": JSON,
                                      "previous": JSON})
    event = st.fixed_dictionaries({
        "eventId": JSON,
        "subscriptionType": st.one_of(st.sampled_from([
            "contact.creation", "contact.propertyChange", "contact.deletion",
            "contact.merge", "contact.restore", "company.creation"]), JSON),
        "objectId": st.one_of(st.integers(), JSON),
        "mergedObjectIds": JSON,
        "primaryObjectId": JSON,
        "occurredAt": JSON,
    })
    return st.one_of(st.lists(event, max_size=4), JSON)


def bodies(crm: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=64),
        JSON.map(lambda v: json.dumps(v).encode()),
        near_valid(crm).map(lambda v: json.dumps(v).encode()),
    )


def signed_headers(crm: str, body: bytes) -> dict[str, str]:
    """The headers the CRM would send with `body` for URL, signed with SECRET."""
    if crm == "attio":
        return {"Attio-Signature": hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()}
    if crm == "pipedrive":
        return {"Authorization": "Basic " + base64.b64encode(SECRET.encode()).decode()}
    timestamp = str(int(time.time() * 1000))
    return {"X-HubSpot-Signature-v3": hubspot_signature(SECRET, "POST", URL, body, timestamp),
            "X-HubSpot-Request-Timestamp": timestamp, "X-HubSpot-Signature-Version": "v3"}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def adapters() -> AsyncIterator[dict[str, CrmAdapter]]:
    async with aiohttp.ClientSession() as session:
        yield {crm: factory(session, api_key="fuzz-key", base_url="http://127.0.0.1:9",
                            timeout=1, limiters=None, retry=None, max_pause=1.0)
               for crm, factory in ADAPTERS.items()}


def check_event(event: WebhookEvent) -> None:
    assert isinstance(event.event_id, str) and event.event_id
    assert isinstance(event.event_type, str)
    for change in event.changes:
        assert change.kind in KINDS, change
        assert isinstance(change.record_id, str) and change.record_id, change
        assert change.merged_from is None or isinstance(change.merged_from, str), change


@pytest.mark.parametrize("crm", sorted(ADAPTERS))
@FUZZ
@given(data=st.data())
async def test_verify_answers_only_with_a_signature_error(
    adapters: dict[str, CrmAdapter], crm: str, data: st.DataObject,
) -> None:
    headers = data.draw(HEADERS)
    body = data.draw(bodies(crm))
    with contextlib.suppress(WebhookSignatureError):
        adapters[crm].verify_webhook(headers, body, SECRET, method="POST", url=URL)


@pytest.mark.parametrize("crm", sorted(ADAPTERS))
@FUZZ
@given(data=st.data())
async def test_a_correctly_signed_delivery_verifies_and_parses_or_is_malformed(
    adapters: dict[str, CrmAdapter], crm: str, data: st.DataObject,
) -> None:
    body = data.draw(bodies(crm))
    adapter = adapters[crm]
    adapter.verify_webhook(signed_headers(crm, body), body, SECRET, method="POST", url=URL)
    try:
        event = adapter.parse_webhook({}, body)
    except WebhookFormatError:
        return
    check_event(event)
