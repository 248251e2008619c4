"""`openphone-signature` verification: vectors computed here, wrong key, staleness, lists;
the bounds on what a hostile header may cost; and fuzzing of headers and bodies."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.quo import signature
from crmsync.quo.signature import MAX_ENTRIES, SignatureError, SignedDelivery, sign, verify

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


# -- hostile headers -------------------------------------------------------------------


@contextlib.contextmanager
def counted_hmacs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The length of every key an HMAC was started with, in `crmsync.quo.signature`."""
    started: list[int] = []

    def new(key: bytes, *args: Any, **kwargs: Any) -> Any:
        started.append(len(key))
        return hmac.new(key, *args, **kwargs)

    monkeypatch.setattr(
        signature, "hmac", SimpleNamespace(new=new, compare_digest=hmac.compare_digest)
    )
    yield started


def wrong_entries(count: int, *, digest_bytes: int = 32, same_time: bool = False) -> list[str]:
    digest = base64.b64encode(b"\7" * digest_bytes).decode()
    return [f"hmac;1;{TS_MS if same_time else TS_MS - i};{digest}" for i in range(count)]


def test_a_header_of_more_than_max_entries_is_refused_even_with_a_valid_entry() -> None:
    valid = expected_header(KEY, TS_MS, BODY)
    verify(KEY, ",".join([*wrong_entries(MAX_ENTRIES - 1), valid]), BODY, now=NOW)
    with pytest.raises(SignatureError, match=f"more than {MAX_ENTRIES}"):
        verify(KEY, ",".join([*wrong_entries(MAX_ENTRIES), valid]), BODY, now=NOW)
    with pytest.raises(SignatureError, match=f"more than {MAX_ENTRIES}"):
        verify(KEY, "," * MAX_ENTRIES, BODY, now=NOW)  # empty entries count too


def test_entries_that_cannot_match_cost_no_hmac(monkeypatch: pytest.MonkeyPatch) -> None:
    """Digests of another length than SHA-256's, stale entries and a 300-entry header
    are refused without computing any HMAC (each entry used to cost two)."""
    header = ",".join([*wrong_entries(4, digest_bytes=3), f"hmac;1;{TS_MS - 10**9};{'A' * 44}"])
    with counted_hmacs(monkeypatch) as started:
        for value in (header, ",".join(wrong_entries(300, digest_bytes=3))):
            with pytest.raises(SignatureError):
                verify(KEY, value, BODY, now=NOW)
    assert started == []


def test_entries_sharing_a_timestamp_share_one_hmac(monkeypatch: pytest.MonkeyPatch) -> None:
    """Eight wrong entries with one timestamp over a pretty-printed body: one HMAC of the
    raw body and one of its compact form (there were sixteen)."""
    pretty = json.dumps(json.loads(BODY), indent=2).encode()
    with counted_hmacs(monkeypatch) as started, pytest.raises(SignatureError):
        verify(KEY, ",".join(wrong_entries(MAX_ENTRIES, same_time=True)), pretty, now=NOW)
    assert len(started) == 2


def test_a_timestamp_of_non_ascii_digits_is_malformed() -> None:
    """int() reads Arabic-Indic digits, "1_000" or " 12" as numbers: the signed text
    would then differ from the header's. Only ASCII digits are a timestamp."""
    arabic_indic = "".join(chr(0x660 + int(d)) for d in "0123456789")
    arabic = str(TS_MS).translate(str.maketrans("0123456789", arabic_indic))
    digest = expected_header(KEY, TS_MS, BODY).rsplit(";", 1)[1]
    for stamp in (arabic, f"{TS_MS:_}", f" {TS_MS}", f"+{TS_MS}"):
        with pytest.raises(SignatureError):
            verify(KEY, f"hmac;1;{stamp};{digest}", BODY, now=NOW)


def test_the_compact_fallback_reads_utf8_json_only() -> None:
    """Found by the fuzz test below: json.loads(bytes) also reads UTF-16, so b'0\\0' (a
    UTF-16 "0") compacted to b'0' and passed with a signature made over b'0'."""
    for body in (b"0\0", "[1]".encode("utf-16-le"), '"x"'.encode("utf-32")):
        signed_over = json.dumps(json.loads(body), separators=(",", ":")).encode()
        with pytest.raises(SignatureError):
            verify(KEY, expected_header(KEY, TS_MS, signed_over), body, now=NOW)


def test_one_delivery_checks_many_keys_raw_first_and_compacts_once() -> None:
    pretty = json.dumps(json.loads(BODY), indent=2).encode()
    keys = [OTHER_KEY, "not base64!", KEY]
    over_compact = expected_header(KEY, TS_MS, BODY)  # BODY is pretty's compact form
    delivery = SignedDelivery(over_compact, pretty, now=NOW)
    assert delivery.matching_key(keys) == KEY
    assert delivery.matching_key([OTHER_KEY]) is None
    assert delivery.work_bytes(3) == 2 * 3 * (len(pretty) + 32)
    assert SignedDelivery(expected_header(KEY, TS_MS, pretty), pretty, now=NOW).matching_key(
        keys) == KEY


# -- fuzzing ---------------------------------------------------------------------------

FUZZ = settings(max_examples=400, deadline=None, database=None)
header_text = st.text(st.characters(codec="utf-8"), max_size=300)
#: one entry's worth of text: no comma, which would make it two entries
no_comma = st.text(st.characters(codec="utf-8", exclude_characters=","), max_size=50)
entry_text = st.builds(
    lambda stamp, digest: f"hmac;1;{stamp};{digest}",
    st.one_of(st.integers(TS_MS - 10**6, TS_MS + 10**6).map(str), no_comma),
    st.one_of(st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()), no_comma),
)
any_header = st.one_of(
    header_text, st.lists(st.one_of(entry_text, header_text), max_size=12).map(",".join)
)


@FUZZ
@given(header=any_header, body=st.binary(max_size=2048))
def test_fuzz_any_header_and_body_is_refused_with_a_signature_error(
    header: str, body: bytes
) -> None:
    """Whatever the header and body, verification raises `SignatureError` (nothing else),
    and never accepts a header it did not sign."""
    with pytest.raises(SignatureError):
        verify(KEY, header, body, now=NOW)


@FUZZ
@given(
    body=st.one_of(st.binary(max_size=2048),
                   st.recursive(st.none() | st.booleans() | st.floats(allow_nan=False)
                                | st.text(max_size=20),
                                lambda inner: st.lists(inner, max_size=4)
                                | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                                max_leaves=20).map(lambda v: json.dumps(v, indent=1).encode())),
    junk=st.lists(entry_text, max_size=MAX_ENTRIES - 1),
    position=st.integers(0, MAX_ENTRIES - 1),
    skew_ms=st.integers(-300_000, 300_000),
)
def test_fuzz_a_valid_entry_among_junk_verifies_and_a_tampered_body_does_not(
    body: bytes, junk: list[str], position: int, skew_ms: int
) -> None:
    valid = expected_header(KEY, TS_MS + skew_ms, body)
    entries = [*junk]
    entries.insert(min(position, len(entries)), valid)
    header = ",".join(entries)
    verify(KEY, header, body, now=TS_MS / 1000)
    with pytest.raises(SignatureError):
        verify(OTHER_KEY, header, body, now=TS_MS / 1000)
    with pytest.raises(SignatureError):
        verify(KEY, header, body + b"\0", now=TS_MS / 1000)
