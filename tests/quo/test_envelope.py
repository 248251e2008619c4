"""`crmsync.quo.envelope`: both Quo envelopes read the same way, one business key per
occurrence.

The cross-system cases build the two formats of one occurrence with the Quo
simulator's own payload code (`sim.payloads`: the new `data.resource` and the legacy
`data.object` it derives from the same records), so the key is checked against the
timestamps the legacy payloads really carry, not against a copy of the rule.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.quo import envelope
from crmsync.quo.envelope import EnvelopeError, QuoEnvelope
from crmsync.sim.quo import QuoSim

CALLER = "+14155550123"


def new_body(event_type: str, resource: dict[str, Any], event_id: str = "EV-new") -> bytes:
    return json.dumps({
        "id": event_id, "apiVersion": "2026-03-30", "createdAt": "2026-04-13T12:00:01.000Z",
        "type": event_type,
        "data": {"resource": resource, "context": {"orgId": "OR1"},
                 "links": {"quo": "https://my.quo.com/x"}},
    }).encode()


def legacy_body(event_type: str, obj: dict[str, Any], event_id: str = "EV-legacy") -> bytes:
    return json.dumps({
        "id": event_id, "object": "event", "apiVersion": "v4", "type": event_type,
        "createdAt": "2026-04-13T12:00:02.000Z", "data": {"object": obj, "deepLink": "dl"},
    }).encode()


def both(sim: QuoSim, event_type: str, parts: tuple[dict[str, Any], ...],
         legacy_type: str | None = None) -> tuple[QuoEnvelope, QuoEnvelope]:
    resource, context, _ = parts
    legacy = sim.legacy_objects.legacy_object(event_type, resource, context)
    assert legacy is not None
    return (envelope.decode(legacy_body(legacy_type or event_type, legacy)),
            envelope.decode(new_body(event_type, resource)))


# -- reading both formats ---------------------------------------------------------------


def test_a_new_envelope_is_read_with_its_resource_context_and_links() -> None:
    body = new_body("call.summary.completed", {"callId": "AC1", "summary": ["hi"]})
    env = envelope.decode(body)
    assert (env.system, env.event_id, env.type, env.event_type) == (
        "2026-03-30", "EV-new", "call.summary.completed", "call.summary.completed"
    )
    assert env.resource == {"callId": "AC1", "summary": ["hi"]}
    assert (env.context, env.deep_link, env.created_at) == (
        {"orgId": "OR1"}, "https://my.quo.com/x", "2026-04-13T12:00:01.000Z"
    )
    assert env.resource_id == "AC1"
    assert env.business_key == '["call.summary.completed","AC1"]'


def test_a_legacy_envelope_keeps_its_type_and_normalises_the_event_name() -> None:
    env = envelope.decode(legacy_body("callTranscript", {"callId": "AC1", "createdAt": "x"}))
    assert (env.system, env.type, env.event_type) == (
        "legacy", "callTranscript", "call.transcript.completed"
    )
    assert (env.resource_id, env.deep_link, env.context) == ("AC1", "dl", {})
    assert env.business_key is None  # its createdAt is not a time


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'"x"', b"{}", b'{"id": "EV1"}', b'{"type": "t"}',
    b'{"id": " ", "type": "t"}', b'{"id": "EV1", "type": 5}', b"\xff\xfe{", b"[" * 5000,
])
def test_a_body_that_is_no_envelope_is_an_envelope_error(body: bytes) -> None:
    with pytest.raises(EnvelopeError):
        envelope.decode(body)


def test_only_id_and_type_are_required() -> None:
    """As the legacy intake always did: odd `data` is an empty resource, not an error."""
    for data in (None, [], "x", {"object": 5}, {"resource": []}):
        env = envelope.from_json({"id": "EV1", "type": "message.received", "data": data})
        assert (env.resource, env.resource_id, env.business_key) == ({}, None, None)


@pytest.mark.parametrize(("data", "api_version", "system"), [
    ({"resource": {}}, "v4", "2026-03-30"),
    ({"object": {}}, "2026-03-30", "legacy"),
    (None, "2026-03-30", "2026-03-30"),
    (None, "v3", "legacy"),
])
def test_the_system_is_told_by_data_resource_or_object(
    data: Any, api_version: str, system: str
) -> None:
    env = envelope.from_json({"id": "E", "type": "t", "apiVersion": api_version, "data": data})
    assert env.system == system


# -- resource ids and business keys -------------------------------------------------------


def test_the_voicemail_resource_id_is_its_call_id() -> None:
    resource = {"id": "AC-vm", "voicemailId": "VM1", "callId": "AC-call",
                "createdAt": "2026-04-13T12:00:00Z"}
    assert envelope.resource_id("call.voicemail.completed", resource) == "AC-call"
    assert envelope.business_key("call.voicemail.completed", resource) == (
        '["call.voicemail.completed","AC-call","2026-04-13T12:00:00.000Z"]'
    )
    orphan = {**resource, "callId": None}
    assert envelope.resource_id("call.voicemail.completed", orphan) == "AC-vm"


def test_a_later_edit_of_the_same_contact_is_a_new_key() -> None:
    contact = {"id": "CT1", "firstName": "Jane", "createdAt": "2026-01-01T00:00:00Z",
               "updatedAt": "2026-04-13T12:00:00.000Z"}
    first = envelope.business_key("contact.updated", contact)
    again = envelope.business_key("contact.updated", {**contact, "firstName": "Janet"})
    later = envelope.business_key(
        "contact.updated", {**contact, "updatedAt": "2026-04-13T12:00:00.001Z"}
    )
    deleted = envelope.business_key("contact.deleted", contact)
    assert first is not None and later is not None
    assert first == again  # same updatedAt: the same occurrence, however it is spelled
    assert len({first, later, deleted}) == 3


def test_one_instant_spelled_two_ways_is_one_key() -> None:
    a = envelope.business_key("contact.updated", {"id": "CT1", "updatedAt": "2026-04-13T12:00:00Z"})
    b = envelope.business_key(
        "contact.updated", {"id": "CT1", "updatedAt": "2026-04-13T14:00:00.000+02:00"}
    )
    assert a == b is not None


@pytest.mark.parametrize(("event_type", "resource"), [
    ("contact.updated", {"id": "CT1"}),  # no updatedAt: a later edit must not collide
    ("contact.updated", {"id": "CT1", "updatedAt": "yesterday"}),
    ("message.received", {"id": "AC1"}),
    ("call.completed", {"createdAt": "2026-04-13T12:00:00Z"}),  # no id
    ("task.updated", {"id": "TK1"}),  # tasks repeat and carry no timestamp
    ("integration.created", {"id": "IN1", "createdAt": "2026-04-13T12:00:00Z"}),
])
def test_no_key_when_the_occurrence_cannot_be_told_apart(
    event_type: str, resource: dict[str, Any]
) -> None:
    assert envelope.business_key(event_type, resource) is None


def test_a_huge_key_is_hashed() -> None:
    key = envelope.business_key("call.summary.completed", {"callId": "A" * 5000})
    assert key is not None and key.startswith("sha256:") and len(key) == 71


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "callId", "createdAt", "updatedAt"]),
                       st.one_of(st.none(), st.integers(), st.text(max_size=30)), max_size=4),
       st.sampled_from(sorted(envelope.OCCURRENCE_STAMP)))
def test_any_resource_gives_a_storable_key_or_none(resource: dict[str, Any], kind: str) -> None:
    key = envelope.business_key(kind, resource)
    assert key is None or (key.isascii() and len(key) <= envelope.MAX_KEY_CHARS)


# -- the same occurrence through both systems (the simulator's payloads) ------------------


@pytest.fixture
def sim() -> QuoSim:
    return QuoSim()


def test_a_message_has_one_key_in_both_systems(sim: QuoSim) -> None:
    message = sim.workspace.add_message(CALLER, "hello")
    legacy, new = both(sim, "message.received", sim.payloads.message(message))
    assert legacy.system == "legacy" and new.system == "2026-03-30"
    assert legacy.business_key == new.business_key is not None
    assert legacy.resource_id == new.resource_id == message["id"]
    outgoing = sim.workspace.add_message(CALLER, "bye", direction="outgoing")
    legacy, new = both(sim, "message.delivered", sim.payloads.message(outgoing))
    assert legacy.business_key == new.business_key is not None


def test_a_call_and_its_parts_have_one_key_each_in_both_systems(sim: QuoSim) -> None:
    call = sim.workspace.add_call([CALLER], duration=42)
    sim.workspace.add_call_summary(call["id"], ["Asked about pricing"], next_steps=["Call"])
    sim.workspace.add_call_transcript(call["id"], [("Hello", None), ("Hi", CALLER)])
    pairs = {
        "call.completed": both(sim, "call.completed", sim.payloads.call_completed(call)),
        "call.summary.completed": both(
            sim, "call.summary.completed", sim.payloads.summary(call), "callSummary"),
        "call.transcript.completed": both(
            sim, "call.transcript.completed", sim.payloads.transcript(call), "callTranscript"),
    }
    keys = set()
    for kind, (legacy, new) in pairs.items():
        assert legacy.event_type == new.event_type == kind
        assert legacy.resource_id == new.resource_id == call["id"]
        assert legacy.business_key == new.business_key is not None, kind
        keys.add(new.business_key)
    assert len(keys) == 3  # the parts of one call never collide with each other


def test_a_contact_edit_has_one_key_in_both_systems(sim: QuoSim) -> None:
    contact = {
        "id": "CT1", "externalId": "rec-1", "source": "attio",
        "defaultFields": {"firstName": "Jane", "lastName": "Doe", "company": None,
                          "role": None, "emails": [{"name": "work", "value": "j@x.io"}],
                          "phoneNumbers": [{"name": "mobile", "value": CALLER}]},
        "customFields": [], "createdAt": "2026-01-01T00:00:00.000Z",
        "updatedAt": "2026-04-13T12:00:00.000Z",
    }
    resource, _, _ = sim.payloads.contact(contact)
    legacy = envelope.decode(legacy_body("contact.updated", {**contact, "object": "contact"}))
    new = envelope.decode(new_body("contact.updated", resource))
    assert legacy.business_key == new.business_key is not None
    edited = {**contact, "updatedAt": "2026-04-13T12:05:00.000Z"}
    assert envelope.decode(new_body("contact.updated", sim.payloads.contact(edited)[0])
                           ).business_key != new.business_key


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.sampled_from(["id", "type", "data", "resource", "object", "callId",
                                       "createdAt", "updatedAt", "apiVersion"]),
                      inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=500, deadline=None)
@given(json_values)
def test_any_json_is_an_envelope_or_an_envelope_error(value: Any) -> None:
    try:
        env = envelope.from_json(value)
    except EnvelopeError:
        return
    assert env.system in ("legacy", "2026-03-30")
    key = env.business_key
    assert key is None or key.isascii()
    assert env.resource_id is None or isinstance(env.resource_id, str)
