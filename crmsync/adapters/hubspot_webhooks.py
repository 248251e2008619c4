"""HubSpot app webhooks without I/O: the v3 signature and the event batches.

A HubSpot app's webhooks are set up in HubSpot (private apps cannot do it through the
API), so the secret is the app's client secret, given as the tenant's
`crm_webhook_secret`. Each delivery is signed (request-validation docs):
`X-HubSpot-Signature-v3` = base64(HMAC-SHA256(secret, method + uri + body + timestamp))
with `X-HubSpot-Request-Timestamp` in epoch ms, where `uri` is the full URL with a few
URL-encoded characters decoded (`decode_uri`). Deliveries older than five minutes are
refused (a replay); so are ones as far in the future (a clock that is badly off).

A delivery is a JSON array of events, each naming a record (`objectId`) and what
happened to it (`subscriptionType`); the values are re-read from the API. A retry
resends the same events with `attemptNumber` + 1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from crmsync.adapters.base import (
    CrmChange,
    WebhookEvent,
    WebhookFormatError,
    WebhookSignatureError,
)

SIGNATURE: Final = "x-hubspot-signature-v3"
TIMESTAMP: Final = "x-hubspot-request-timestamp"
#: how far (seconds) a delivery's timestamp may be from now, either way
MAX_SKEW: Final = 300.0
#: the escapes HubSpot decodes in the URI it signs (request-validation docs, v3)
_DECODED: Final = {
    "%3A": ":", "%2F": "/", "%3F": "?", "%40": "@", "%21": "!", "%24": "$", "%27": "'",
    "%28": "(", "%29": ")", "%2A": "*", "%2C": ",", "%3B": ";",
}
_ESCAPE = re.compile("|".join(_DECODED), re.IGNORECASE)
#: a contact event's kind of change, by the part of `subscriptionType` after the dot
KINDS: Final = {
    "creation": "created", "propertyChange": "updated", "restore": "updated",
    "associationChange": "updated", "deletion": "deleted", "privacyDeletion": "deleted",
    "merge": "merged",
}
CONTACT_TYPE_ID: Final = "0-1"


def decode_uri(url: str) -> str:
    """`url` as HubSpot signs it: only the listed escapes decoded (not `%20`, `%25`)."""
    return _ESCAPE.sub(lambda m: _DECODED[m.group(0).upper()], url)


def signature(secret: str, method: str, url: str, body: bytes, timestamp: str) -> str:
    """The `X-HubSpot-Signature-v3` of a delivery."""
    message = (method.upper() + decode_uri(url)).encode() + body + timestamp.encode()
    return base64.b64encode(
        hmac.new(secret.encode(), message, hashlib.sha256).digest()).decode()


def _header(headers: Mapping[str, str], name: str) -> str:
    """A header by name in any case (a plain dict is not case-insensitive)."""
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def verify(
    headers: Mapping[str, str], body: bytes, secret: str, *, method: str, url: str,
    now: float,
) -> None:
    """Raise `WebhookSignatureError` unless the delivery is signed with `secret` within
    `MAX_SKEW` of `now` (epoch seconds). Never raises anything else: the listener
    answers 401 to a forgery, whatever it holds."""
    given = _header(headers, SIGNATURE).strip()
    stamp = _header(headers, TIMESTAMP).strip()
    if not given or not stamp:
        raise WebhookSignatureError("X-HubSpot-Signature-v3 or its timestamp missing")
    # compare_digest refuses non-ASCII str; base64 and digits are ASCII.
    if not (given.isascii() and stamp.isascii() and stamp.isdigit() and len(stamp) <= 16):
        raise WebhookSignatureError("X-HubSpot-Signature-v3 or its timestamp garbled")
    if abs(now - int(stamp) / 1000) > MAX_SKEW:
        raise WebhookSignatureError("X-HubSpot-Request-Timestamp is more than 5 minutes off")
    try:
        expected = signature(secret, method, url, body, stamp)
    except UnicodeEncodeError as exc:  # a lone surrogate in the URL or the secret
        raise WebhookSignatureError("the URL cannot be signed") from exc
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise WebhookSignatureError("X-HubSpot-Signature-v3 does not match")


def parse(body: bytes) -> WebhookEvent:
    """A delivery's changes of contacts, one per record and kind; other objects'
    events are left out. Raises `WebhookFormatError` for a body HubSpot would not send.

    The event id hashes the events without their `attemptNumber`, so a retry of the
    same events is a duplicate for the inbox (HubSpot does not promise `eventId` alone
    is unique, so it is not the key by itself).
    """
    try:
        events = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise WebhookFormatError("body is not JSON") from exc
    if not isinstance(events, list) or not events:
        raise WebhookFormatError("a HubSpot delivery is a non-empty JSON array of events")
    if not all(isinstance(event, dict) for event in events):
        raise WebhookFormatError("a HubSpot delivery holds only event objects")
    changes: dict[tuple[str, str, str | None], CrmChange] = {}
    for event in events:
        for change in _changes(event):
            changes.setdefault((change.record_id, change.kind, change.merged_from), change)
    return WebhookEvent(
        event_id="hs-" + _events_hash(events),
        event_type=str(events[0].get("subscriptionType", "")),
        changes=list(changes.values()),
    )


def _changes(event: dict[str, Any]) -> list[CrmChange]:
    kind_name = str(event.get("subscriptionType", ""))
    scope, _, action = kind_name.partition(".")
    if scope == "object":
        if str(event.get("objectTypeId", "")) != CONTACT_TYPE_ID:
            return []
    elif scope != "contact":
        return []
    kind = KINDS.get(action)
    if kind == "merged":
        survivor = _id(event.get("primaryObjectId")) or _id(event.get("newObjectId"))
        merged = event.get("mergedObjectIds")
        if survivor is None:
            return []
        if not isinstance(merged, list) or not merged:
            return [CrmChange(crm_object="people", record_id=survivor, kind="updated")]
        return [
            CrmChange(crm_object="people", record_id=survivor, kind="merged",
                      merged_from=gone)
            for gone in dict.fromkeys(_id(m) for m in merged)
            if gone is not None and gone != survivor
        ]
    record = _id(event.get("objectId"))
    if kind is None or record is None:
        return []
    return [CrmChange(crm_object="people", record_id=record, kind=kind)]


def _id(value: Any) -> str | None:
    """An object id: a number on the wire (a digit string is taken too)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip().isdigit():
        return value.strip()
    return None


def _events_hash(events: list[dict[str, Any]]) -> str:
    keys = sorted(
        json.dumps({k: v for k, v in event.items() if k != "attemptNumber"},
                   sort_keys=True, separators=(",", ":"))
        for event in events
    )
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()
