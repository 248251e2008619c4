"""Quo's `openphone-signature` webhook header: signing (for the simulator) and verifying.

Header format: `hmac;1;<timestamp-ms>;<base64 HMAC-SHA256>`, possibly several entries
separated by commas (Quo says future versions may send more than one). The signed data
is `<timestamp>.<payload>`, with the webhook's base64 `key` decoded to bytes as HMAC key.

Quo's docs disagree on what "payload" is (raw body in their Python sample,
`JSON.stringify(body)` in their Node sample), so verification tries the raw bytes first
and then the compact re-serialisation of the same JSON.

The header comes from anyone who can reach the listener, so the work it may cause is
bounded before any HMAC is computed: at most `MAX_ENTRIES` entries (more is refused at
once), only fresh entries whose digest has SHA-256's length are examined, entries that
share a timestamp share one HMAC, and the compact form is computed at most once per
delivery, and only when the raw body matched no key. `SignedDelivery.work_bytes` says
how many bytes one verification may hash, so a caller can move a big one off the loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

HEADER = "openphone-signature"
DEFAULT_TOLERANCE_SECONDS = 300.0
#: the most entries one header may carry: Quo sends one today and "may send more" during
#: a key rotation; a handful covers that, and caps the HMACs a stranger can make us compute
MAX_ENTRIES: Final = 8
_DIGEST_BYTES: Final = hashlib.sha256().digest_size


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


def _mac(key: bytes, timestamp_ms: int, payload: bytes) -> bytes:
    # Two updates instead of `prefix + payload`: no copy of a body that may be 1 MiB.
    mac = hmac.new(key, f"{timestamp_ms}.".encode(), hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def compute_digest(key_b64: str, timestamp_ms: int, payload: bytes) -> bytes:
    return _mac(_key_bytes(key_b64), timestamp_ms, payload)


def sign(key_b64: str, body: bytes, timestamp_ms: int | None = None) -> str:
    """The header value Quo would send for `body` (used by the simulator and tests)."""
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    digest = base64.b64encode(compute_digest(key_b64, ts, body)).decode()
    return f"hmac;1;{ts};{digest}"


def parse_header(value: str) -> list[SignatureEntry]:
    """The well-formed entries of a header value; `SignatureError` if none, or too many.

    An entry that is not `hmac;1;<ASCII digits>;<base64>` is skipped (a future scheme
    may sit beside ours); more than `MAX_ENTRIES` comma-separated entries of any kind
    are refused before any is decoded.
    """
    raws = value.split(",", MAX_ENTRIES)
    if len(raws) > MAX_ENTRIES:
        raise SignatureError(f"openphone-signature has more than {MAX_ENTRIES} entries")
    entries: list[SignatureEntry] = []
    for raw in raws:
        parts = raw.strip().split(";")
        if len(parts) != 4 or parts[0] != "hmac" or parts[1] != "1":
            continue
        stamp, digest = parts[2], parts[3]
        # int() would also take "١٢٣", "1_000" or " 12": only plain ASCII digits are a time.
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 16:
            continue
        try:
            entries.append(SignatureEntry(int(stamp), base64.b64decode(digest, validate=True)))
        except (ValueError, binascii.Error):  # non-ASCII text is a ValueError here
            continue
    if not entries:
        raise SignatureError("malformed openphone-signature header")
    return entries


def _compact_json(body: bytes) -> bytes | None:
    try:
        # UTF-8 only: json.loads(bytes) would also read UTF-16 and UTF-32, so b'0\0' (a
        # UTF-16 "0") would pass with a signature over b'0'. Quo sends UTF-8.
        parsed = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):  # RecursionError: a deeply nested document
        return None
    # Mirrors JavaScript's JSON.stringify: no spaces, non-ASCII left as is.
    try:
        return json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, RecursionError):  # lone surrogates cannot be UTF-8
        return None


class SignedDelivery:
    """One delivery's signature entries and body, checked against any number of keys.

    Built from the header (raises `SignatureError` when it is missing, malformed, has
    too many entries or none within the tolerance), then `matching_key(keys)` checks
    the raw body against every key before it computes the compact JSON form, once.
    Not thread-safe, but one delivery may be checked in a worker thread.
    """

    __slots__ = ("_body", "_by_timestamp", "_compact", "_compacted")

    def __init__(
        self,
        header_value: str | None,
        body: bytes,
        *,
        tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
        now: float | None = None,
    ) -> None:
        if not header_value:
            raise SignatureError("missing openphone-signature header")
        entries = parse_header(header_value)
        now_ms = (time.time() if now is None else now) * 1000
        fresh = [e for e in entries if abs(now_ms - e.timestamp_ms) <= tolerance_seconds * 1000]
        if not fresh:
            raise SignatureError("openphone-signature timestamp outside the tolerance window")
        # A digest of another length can never match: no HMAC is spent on it.
        self._by_timestamp: dict[int, list[bytes]] = {}
        for entry in fresh:
            if len(entry.digest) == _DIGEST_BYTES:
                self._by_timestamp.setdefault(entry.timestamp_ms, []).append(entry.digest)
        self._body = body
        self._compact: bytes | None = None  # None: not JSON, or the same as the body
        self._compacted = False

    def work_bytes(self, keys: int) -> int:
        """The most bytes `matching_key` hashes for `keys` keys (raw and compact forms)."""
        return 2 * keys * len(self._by_timestamp) * (len(self._body) + 32)

    def matching_key(self, keys: Iterable[str]) -> str | None:
        """The first key that signed the raw body, else the compact form; None if none."""
        if not self._by_timestamp:
            return None
        decoded: list[tuple[str, bytes]] = []
        for key in keys:
            try:
                decoded.append((key, _key_bytes(key)))
            except SignatureError:
                continue  # one broken stored key must not hide the others
        if not decoded:
            return None
        found = self._match(decoded, self._body)
        if found is not None:
            return found
        if not self._compacted:
            compact = _compact_json(self._body)
            self._compact = None if compact == self._body else compact
            self._compacted = True
        if self._compact is None:
            return None
        return self._match(decoded, self._compact)

    def _match(self, keys: list[tuple[str, bytes]], payload: bytes) -> str | None:
        for key, secret in keys:
            for timestamp_ms, digests in self._by_timestamp.items():
                expected = _mac(secret, timestamp_ms, payload)
                if any(hmac.compare_digest(expected, digest) for digest in digests):
                    return key
        return None


def verify(
    key_b64: str,
    header_value: str | None,
    body: bytes,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise `SignatureError` unless one of the header's signatures matches `body`."""
    delivery = SignedDelivery(header_value, body, tolerance_seconds=tolerance_seconds, now=now)
    _key_bytes(key_b64)  # a broken key is an error here, not just "no match"
    if delivery.matching_key([key_b64]) is None:
        raise SignatureError("openphone-signature does not match")
