"""Quo's `openphone-signature` webhook header: signing (for the simulator) and verifying.

Header format: `hmac;1;<timestamp-ms>;<base64 HMAC-SHA256>`, possibly several entries
separated by commas (Quo says future versions may send more than one). The signed data
is `<timestamp>.<payload>`, with the webhook's base64 `key` decoded to bytes as HMAC key.

Quo's docs disagree on what "payload" is (raw body in their Python sample,
`JSON.stringify(body)` in their Node sample), so verification tries the raw bytes first
and then the compact re-serialisation of the same JSON.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

HEADER = "openphone-signature"
DEFAULT_TOLERANCE_SECONDS = 300.0


class SignatureError(Exception):
    """The signature is missing, malformed, stale or does not match (answer 401)."""


@dataclass(frozen=True, slots=True)
class SignatureEntry:
    timestamp_ms: int
    digest: bytes


def _key_bytes(key_b64: str) -> bytes:
    try:
        return base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("webhook signing key is not valid base64") from exc


def compute_digest(key_b64: str, timestamp_ms: int, payload: bytes) -> bytes:
    signed = str(timestamp_ms).encode() + b"." + payload
    return hmac.new(_key_bytes(key_b64), signed, hashlib.sha256).digest()


def sign(key_b64: str, body: bytes, timestamp_ms: int | None = None) -> str:
    """The header value Quo would send for `body` (used by the simulator and tests)."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    digest = base64.b64encode(compute_digest(key_b64, ts, body)).decode()
    return f"hmac;1;{ts};{digest}"


def parse_header(value: str) -> list[SignatureEntry]:
    entries: list[SignatureEntry] = []
    for raw in value.split(","):
        parts = raw.strip().split(";")
        if len(parts) != 4 or parts[0] != "hmac" or parts[1] != "1":
            continue
        try:
            entries.append(
                SignatureEntry(int(parts[2]), base64.b64decode(parts[3], validate=True))
            )
        except (ValueError, binascii.Error):
            continue
    if not entries:
        raise SignatureError("malformed openphone-signature header")
    return entries


def _compact_json(body: bytes) -> bytes | None:
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    # Mirrors JavaScript's JSON.stringify: no spaces, non-ASCII left as is.
    return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()


def verify(
    key_b64: str,
    header_value: str | None,
    body: bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise `SignatureError` unless one of the header's signatures matches `body`."""
    if not header_value:
        raise SignatureError("missing openphone-signature header")
    entries = parse_header(header_value)
    now_ms = (time.time() if now is None else now) * 1000
    fresh = [e for e in entries if abs(now_ms - e.timestamp_ms) <= tolerance_seconds * 1000]
    if not fresh:
        raise SignatureError("openphone-signature timestamp outside the tolerance window")
    candidates = [body]
    compact = _compact_json(body)
    if compact is not None and compact != body:
        candidates.append(compact)
    for entry in fresh:
        for payload in candidates:
            expected = compute_digest(key_b64, entry.timestamp_ms, payload)
            if hmac.compare_digest(expected, entry.digest):
                return
    raise SignatureError("openphone-signature does not match")
