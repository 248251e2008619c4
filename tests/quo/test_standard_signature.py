"""`crmsync.quo.standard_signature`: Quo's 2026-03-30 (Standard Webhooks) signatures.

Deliveries are signed with the `standardwebhooks` package directly (not with the module
under test). Every refusal is a `SignatureError` (the listener's 401), whatever the
headers hold: the package's own `ValueError`s never escape (hypothesis below).
"""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime
from typing import Any

import pytest
import standardwebhooks.webhooks as sw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from crmsync.quo.signature import SignatureError
from crmsync.quo.standard_signature import (
    MAX_ENTRIES,
    MAX_SIGNATURE_CHARS,
    StandardDelivery,
    is_standard_delivery,
    is_standard_key,
)

KEY = "whsec_" + base64.b64encode(b"crmsync-test-key-0123456789abcdef").decode()
OTHER_KEY = "whsec_" + base64.b64encode(b"another-key-entirely-9876543210").decode()
LEGACY_KEY = "R2ZLM2o0bFhBNVpyUnU2NG9mYXQ1MHNyR3pvSUhIVVg="
BODY = b'{"id":"EV1","type":"message.received","data":{"resource":{"id":"AC1"}}}'
# The public Standard Webhooks test vector (research quo-api-2026-03-30.md section 3).
VECTOR_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
          "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
VECTOR_BODY = b'{"test": 2432232314}'


def signed(body: bytes = BODY, *, key: str = KEY, msg_id: str = "msg_1",
           at: float | None = None) -> dict[str, str]:
    moment = time.time() if at is None else at
    stamp = datetime.fromtimestamp(int(moment), tz=UTC)
    signature = sw.Webhook(key).sign(msg_id, stamp, body)
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(moment)),
            "webhook-signature": signature}


def junk_entry() -> str:
    return "v1," + base64.b64encode(bytes(32)).decode()


@pytest.fixture
def at_vector_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The package reads its own clock: freeze it at the vector's time."""

    class Frozen(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Frozen:
            return cls.fromtimestamp(1614265330 + 10, tz=tz)

    monkeypatch.setattr(sw, "datetime", Frozen)


def test_the_public_test_vector_verifies(at_vector_time: None) -> None:
    delivery = StandardDelivery(VECTOR, VECTOR_BODY, now=1614265330 + 10)
    assert delivery.delivery_id == VECTOR["webhook-id"]
    assert delivery.matching_key([OTHER_KEY, VECTOR_KEY]) == VECTOR_KEY
    assert delivery.matching_key([OTHER_KEY]) is None


def test_any_v1_entry_may_match_and_other_versions_are_skipped() -> None:
    headers = signed()
    entries = [junk_entry(), "v1a,ed25519-would-be-here", headers["webhook-signature"]]
    headers["webhook-signature"] = " ".join(entries)
    assert StandardDelivery(headers, BODY).matching_key([KEY]) == KEY


def test_header_names_are_case_insensitive_in_a_plain_dict() -> None:
    headers = {name.title(): value for name, value in signed().items()}
    assert is_standard_delivery(headers)
    assert StandardDelivery(headers, BODY).matching_key([KEY]) == KEY


def test_only_whsec_keys_are_tried_and_a_broken_one_hides_no_other() -> None:
    delivery = StandardDelivery(signed(), BODY)
    assert delivery.matching_key([LEGACY_KEY, "whsec_", "whsec_%%%", "whsec_é", KEY]) == KEY
    assert delivery.matching_key([LEGACY_KEY]) is None
    assert is_standard_key(KEY) and not is_standard_key(LEGACY_KEY)


def test_the_body_must_be_the_signed_bytes() -> None:
    headers = signed()
    assert StandardDelivery(headers, BODY + b" ").matching_key([KEY]) is None
    assert StandardDelivery({**headers, "webhook-id": "msg_2"}, BODY).matching_key([KEY]) is None


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86400 * 365])
def test_a_timestamp_more_than_five_minutes_off_either_way_is_refused(offset: int) -> None:
    headers = signed(at=time.time() + offset)
    with pytest.raises(SignatureError, match="tolerance"):
        StandardDelivery(headers, BODY)


@pytest.mark.parametrize("offset", [-290, 290])
def test_a_timestamp_within_five_minutes_verifies(offset: int) -> None:
    headers = signed(at=time.time() + offset)
    assert StandardDelivery(headers, BODY).matching_key([KEY]) == KEY


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_each_header_is_required(missing: str) -> None:
    headers = signed()
    del headers[missing]
    with pytest.raises(SignatureError, match="missing"):
        StandardDelivery(headers, BODY)
    with pytest.raises(SignatureError, match="missing"):
        StandardDelivery({**signed(), missing: ""}, BODY)


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_header_sent_twice_is_refused(name: str) -> None:
    headers = CIMultiDict(signed())
    headers.add(name.upper(), signed()[name])
    with pytest.raises(SignatureError, match="single"):
        StandardDelivery(headers, BODY)


@pytest.mark.parametrize("stamp", [
    "1e9", " 1700000000", "1700000000.5", "-1", "nan", "inf", "", "\u0661\u0667" + "\u0660" * 8,
    "1_700_000_000", "9" * 13, "0x65",
])
def test_a_timestamp_that_is_not_plain_seconds_is_refused(stamp: str) -> None:
    headers = {**signed(), "webhook-timestamp": stamp}
    with pytest.raises(SignatureError):
        StandardDelivery(headers, BODY)


@pytest.mark.parametrize("msg_id", ["msg 1", "msg_é", "msg_\x00", "m" * 257, "msg_\ud800"])
def test_an_odd_delivery_id_is_refused(msg_id: str) -> None:
    with pytest.raises(SignatureError, match="webhook-id"):
        StandardDelivery({**signed(), "webhook-id": msg_id}, BODY)


@pytest.mark.parametrize("signature", [
    "v1", "v1,", "v1,AAAA", "v2" + junk_entry()[2:], "g0hM9SsE", "v1,not base64!",
    "v1,\ud800", "v1a," + junk_entry()[3:], ",,,", " ",
])
def test_a_signature_without_a_well_formed_v1_entry_is_refused(signature: str) -> None:
    with pytest.raises(SignatureError):
        StandardDelivery({**signed(), "webhook-signature": signature}, BODY)


def test_entries_and_length_are_capped_before_any_hmac() -> None:
    valid = signed()["webhook-signature"]
    too_many = " ".join([junk_entry()] * MAX_ENTRIES + [valid])
    with pytest.raises(SignatureError, match="more than"):
        StandardDelivery({**signed(), "webhook-signature": too_many}, BODY)
    just_enough = " ".join([junk_entry()] * (MAX_ENTRIES - 1) + [valid])
    assert StandardDelivery({**signed(), "webhook-signature": just_enough}, BODY
                            ).matching_key([KEY]) == KEY
    too_long = valid + " " * MAX_SIGNATURE_CHARS
    with pytest.raises(SignatureError, match="longer"):
        StandardDelivery({**signed(), "webhook-signature": too_long}, BODY)


def test_work_is_keys_times_the_body_whatever_the_entries() -> None:
    headers = signed(BODY * 100)
    headers["webhook-signature"] = " ".join([junk_entry()] * MAX_ENTRIES)
    delivery = StandardDelivery(headers, BODY * 100)
    assert len(BODY * 100) * 3 < delivery.work_bytes(3) < (len(BODY * 100) + 300) * 3


text = st.text(max_size=80)
header_text = st.one_of(text, st.sampled_from(["v1,", "v1," + "A" * 43 + "=", " ", "msg_1"]))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    msg_id=st.one_of(header_text, st.just("msg_1")),
    stamp=st.one_of(text, st.integers(-10**20, 10**20).map(str),
                    st.just(str(int(time.time())))),
    signature=st.one_of(header_text, st.lists(header_text, max_size=12).map(" ".join)),
    body=st.binary(max_size=64),
    keys=st.lists(st.one_of(st.just(KEY), text, text.map("whsec_".__add__)), max_size=3),
)
def test_fuzz_any_headers_are_a_match_a_miss_or_a_signature_error(
    msg_id: str, stamp: str, signature: str, body: bytes, keys: list[str]
) -> None:
    headers = {"webhook-id": msg_id, "webhook-timestamp": stamp, "webhook-signature": signature}
    try:
        delivery = StandardDelivery(headers, body)
    except SignatureError:
        return
    assert delivery.matching_key(keys) in (None, *keys)
