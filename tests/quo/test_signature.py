"""`openphone-signature` verification: vectors computed here, wrong key, staleness, lists."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import pytest

from crmsync.quo.signature import SignatureError, sign, verify

# The key from Quo's documentation example (decodes to an ASCII string).
KEY = base64.b64encode(b"GfK3j4lXA5ZrRu64ofat50srGzoIHHUX").decode()
OTHER_KEY = base64.b64encode(b"another-webhook-key-0123456789ab").decode()
TS_MS = 1_700_000_000_000
NOW = TS_MS / 1000 + 10
BODY = b'{"id":"EVabc","object":"event","type":"message.received","data":{"object":{"id":"AC1"}}}'


def expected_header(key_b64: str, ts_ms: int, payload: bytes) -> str:
    """The scheme written out independently of the code under test."""
    mac = hmac.new(base64.b64decode(key_b64), f"{ts_ms}.".encode() + payload, hashlib.sha256)
    return f"hmac;1;{ts_ms};{base64.b64encode(mac.digest()).decode()}"


def test_sign_matches_an_independently_computed_vector() -> None:
    assert sign(KEY, BODY, TS_MS) == expected_header(KEY, TS_MS, BODY)


def test_valid_signature_passes() -> None:
    verify(KEY, expected_header(KEY, TS_MS, BODY), BODY, now=NOW)


def test_wrong_key_fails() -> None:
    with pytest.raises(SignatureError, match="does not match"):
        verify(KEY, expected_header(OTHER_KEY, TS_MS, BODY), BODY, now=NOW)


def test_tampered_body_fails() -> None:
    with pytest.raises(SignatureError):
        verify(KEY, expected_header(KEY, TS_MS, BODY), BODY.replace(b"AC1", b"AC2"), now=NOW)


def test_stale_timestamp_fails_and_tolerance_is_configurable() -> None:
    header = expected_header(KEY, TS_MS, BODY)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(KEY, header, BODY, now=TS_MS / 1000 + 301)
    verify(KEY, header, BODY, now=TS_MS / 1000 + 301, tolerance_seconds=600)
    with pytest.raises(SignatureError, match="tolerance"):
        verify(KEY, header, BODY, now=TS_MS / 1000 - 301)  # from the future too


def test_any_of_several_comma_separated_signatures_may_match() -> None:
    header = ",".join([
        expected_header(OTHER_KEY, TS_MS, BODY),
        expected_header(KEY, TS_MS, BODY),
    ])
    verify(KEY, header, BODY, now=NOW)
    with pytest.raises(SignatureError):
        verify(KEY, ",".join([expected_header(OTHER_KEY, TS_MS, BODY)] * 2), BODY, now=NOW)


def test_signature_over_compact_json_is_accepted_for_a_pretty_printed_body() -> None:
    pretty = json.dumps(json.loads(BODY), indent=2).encode()
    verify(KEY, expected_header(KEY, TS_MS, BODY), pretty, now=NOW)


@pytest.mark.parametrize(
    "header",
    [None, "", "garbage", "hmac;2;1;abc", f"sha1;1;{TS_MS};AAAA", "hmac;1;notanumber;AAAA"],
)
def test_missing_or_malformed_header_fails(header: str | None) -> None:
    with pytest.raises(SignatureError):
        verify(KEY, header, BODY, now=NOW)


def test_error_messages_never_contain_the_key() -> None:
    with pytest.raises(SignatureError) as info:
        verify(KEY, expected_header(OTHER_KEY, TS_MS, BODY), BODY, now=NOW)
    assert KEY not in str(info.value)
    assert "GfK3j4" not in str(info.value)
