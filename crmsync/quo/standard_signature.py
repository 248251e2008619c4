"""Quo's 2026-03-30 webhook signatures (Standard Webhooks), verified with `standardwebhooks`.

A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and
`webhook-signature` (space-separated `v1,<base64 HMAC-SHA256>` entries; any one
matching is enough, e.g. during a key rotation); the key is the webhook's `whsec_…`
string, stored as Quo returned it (research `quo-api-2026-03-30.md` §3). The HMAC
itself is the `standardwebhooks` package's, not ours.

The headers come from anyone who can reach the listener, and the package raises
`ValueError` (not its own error) on some malformed input, so they are checked and
bounded here first, before any secret is read or HMAC computed: each header exactly
once; an id of at most `MAX_ID_CHARS` printable ASCII characters; a timestamp of ASCII
digits within `TOLERANCE_SECONDS` of our clock, either way (the package's fixed
window); a signature header of at most `MAX_SIGNATURE_CHARS` and `MAX_ENTRIES`
entries (like the legacy header's cap), of which only well-formed `v1` entries are
passed on. Anything else is a `SignatureError` (answer 401). The package computes one
HMAC per key whatever the number of entries, so `work_bytes` is keys times the body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Iterable, Mapping
from typing import Final

from standardwebhooks.webhooks import (
    EmptyWebhookSecretError,
    Webhook,
    WebhookVerificationError,
)

from crmsync.quo.signature import SignatureError

ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"
HEADERS: Final = (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER)
#: the prefix of a Standard Webhooks key; Quo's legacy keys are bare base64
KEY_PREFIX: Final = "whsec_"
#: the package's window (fixed, both directions) and Quo's documented one
TOLERANCE_SECONDS: Final = 300
#: the most entries one signature header may carry (the legacy header's cap too)
MAX_ENTRIES: Final = 8
#: room for MAX_ENTRIES entries of any version (a `v1a` ed25519 entry is 92 characters)
MAX_SIGNATURE_CHARS: Final = 1024
#: Quo's ids are `msg_` + a few dozen characters; the id is also stored per delivery
MAX_ID_CHARS: Final = 256
_MAX_TIMESTAMP_DIGITS: Final = 12
_DIGEST_BYTES: Final = hashlib.sha256().digest_size


def is_standard_key(secret: str) -> bool:
    """A `whsec_` key (2026-03-30 system); the other Quo secrets are legacy keys."""
    return secret.startswith(KEY_PREFIX)


def is_standard_delivery(headers: Mapping[str, str]) -> bool:
    """Routed to this scheme: the request has a `webhook-id` header (research §7)."""
    return bool(_values(headers, ID_HEADER))


class StandardDelivery:
    """One delivery's checked headers and body, verified against any number of keys.

    Building it raises `SignatureError` for missing, repeated, malformed, oversized or
    stale headers; `matching_key(keys)` then runs the package's verification per key.
    Immutable once built: it may be checked in a worker thread.
    """

    __slots__ = ("_body", "_headers", "delivery_id", "timestamp")

    def __init__(
        self, headers: Mapping[str, str], body: bytes, *, now: float | None = None
    ) -> None:
        delivery_id = _single(headers, ID_HEADER)
        stamp = _single(headers, TIMESTAMP_HEADER)
        signature = _single(headers, SIGNATURE_HEADER)
        if len(delivery_id) > MAX_ID_CHARS or not _printable_ascii(delivery_id):
            raise SignatureError("malformed webhook-id header")
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > _MAX_TIMESTAMP_DIGITS:
            raise SignatureError("malformed webhook-timestamp header")
        clock = time.time() if now is None else now
        if abs(clock - int(stamp)) > TOLERANCE_SECONDS:
            raise SignatureError("webhook-timestamp outside the tolerance window")
        entries = _v1_entries(signature)
        self.delivery_id = delivery_id
        self.timestamp = int(stamp)
        self._body = body
        self._headers = {
            ID_HEADER: delivery_id, TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: " ".join(entries),
        }

    def work_bytes(self, keys: int) -> int:
        """The most bytes `matching_key` hashes for `keys` keys."""
        return keys * (len(self._body) + len(self.delivery_id) + 32)

    def matching_key(self, keys: Iterable[str]) -> str | None:
        """The first `whsec_` key that signed this delivery; None if none did."""
        for key in keys:
            if not is_standard_key(key):
                continue
            try:
                webhook = Webhook(key)
            except (ValueError, EmptyWebhookSecretError):  # binascii.Error is a ValueError
                continue  # one broken stored key must not hide the others
            try:
                webhook.verify(self._body, self._headers, json_parse=False)
            except (WebhookVerificationError, ValueError):
                continue  # ValueError: the package's own, on input it did not expect
            return key
        return None


def _values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header `name`, case-insensitively, also from a plain dict."""
    getall = getattr(headers, "getall", None)
    if getall is not None:  # aiohttp's CIMultiDict(Proxy): repeated headers stay apart
        return list(getall(name, []))
    return [value for key, value in headers.items() if key.lower() == name]


def _single(headers: Mapping[str, str], name: str) -> str:
    values = _values(headers, name)
    if not values or not values[0]:
        raise SignatureError(f"missing {name} header")
    if len(values) > 1:
        raise SignatureError(f"expected a single {name} header")
    return values[0]


def _printable_ascii(text: str) -> bool:
    return all("!" <= char <= "~" for char in text)


def _v1_entries(header: str) -> list[str]:
    """The well-formed `v1,<base64 of 32 bytes>` entries; `SignatureError` if none, or
    if the header is over its bounds (checked before it is split further)."""
    if len(header) > MAX_SIGNATURE_CHARS:
        raise SignatureError(f"webhook-signature is longer than {MAX_SIGNATURE_CHARS} characters")
    raws = header.split(None, MAX_ENTRIES)
    if len(raws) > MAX_ENTRIES:
        raise SignatureError(f"webhook-signature has more than {MAX_ENTRIES} entries")
    entries: list[str] = []
    for raw in raws:
        version, comma, digest = raw.partition(",")
        if version != "v1" or not comma:
            continue  # another scheme (e.g. `v1a`) may sit beside ours
        try:
            decoded = base64.b64decode(digest, validate=True)
        except (ValueError, binascii.Error):  # non-ASCII text is a ValueError here
            continue
        if len(decoded) == _DIGEST_BYTES:
            entries.append(raw)
    if not entries:
        raise SignatureError("no well-formed v1 entry in webhook-signature")
    return entries
