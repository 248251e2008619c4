"""Quo events of both envelopes read into one shape; a call's record merges in any order."""

from __future__ import annotations

import functools
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crmsync.quo.envelope import from_json
from crmsync.quo.models import CallSummary, CallTranscript, DialogueLine
from crmsync.services.quo_events import (
    CallPart,
    CallRecord,
    MessageEvent,
    Slot,
    decode_record,
    encode_record,
    parse_event,
)

LINK = "https://my.quo.com/inbox/PN1/c/CN1?at=AC1"
CONTEXT: dict[str, Any] = {
    "orgId": "OR1", "phoneNumberId": "PN1", "conversationId": "CN1", "userId": "US1",
    "contacts": {"ids": [], "lookupStatus": "none"},
    "participants": {"workspace": ["+14155550100"], "external": ["+12125550101"],
                     "resolution": "available"},
}


def new(kind: str, resource: dict[str, Any], context: dict[str, Any] | None = None) -> Any:
    return parse_event(kind, from_json({
        "id": "EV1", "apiVersion": "2026-03-30", "type": kind, "createdAt": "2026-04-13T12:00Z",
        "data": {"resource": resource, "context": CONTEXT if context is None else context,
                 "links": {"quo": LINK}},
    }))


def legacy(kind: str, obj: dict[str, Any]) -> Any:
    return parse_event(kind, from_json({"id": "EV2", "object": "event", "type": kind,
                                        "data": {"object": obj}}))


def test_new_message_takes_its_parties_from_the_context() -> None:
    event = new("message.delivered", {
        "id": "AC1", "direction": "outgoing", "text": "hi", "status": "delivered",
        "media": [{"url": "https://m/1", "type": "image/png"}], "createdAt": "2026-01-01T00:00Z",
    }, {"senderIdentifier": "+14155550100", "recipientIdentifiers": ["+12125550101"]})
    assert event == MessageEvent(
        id="AC1", direction="outgoing", text="hi", senders=("+14155550100",),
        recipients=("+12125550101",), created_at="2026-01-01T00:00Z", link=LINK,
        media_urls=("https://m/1",),
    )


def test_legacy_message_with_body_and_to_as_a_string() -> None:
    event = legacy("message.received", {"id": "AC2", "from": "+12125550101",
                                        "to": "+14155550100", "body": "old"})
    assert isinstance(event, MessageEvent)
    assert (event.direction, event.text, event.recipients) == (
        "incoming", "old", ("+14155550100",))


def test_every_call_event_names_its_call_and_slot() -> None:
    completed = new("call.completed", {
        "id": "AC9", "direction": "incoming", "status": "unanswered", "duration": 0,
        "createdAt": "2026-01-01T00:00:00Z", "hasVoicemail": True,
    })
    assert completed.slot == "completed" and completed.call_id == "AC9"
    assert completed.part.status == "unanswered" and completed.part.has_voicemail
    assert completed.part.external == ("+12125550101",) and completed.part.link == LINK
    missed = new("call.missed", {"id": "AC9", "createdAt": "2026-01-01T00:00:00Z"})
    assert (missed.slot, missed.part.direction, missed.part.status) == (
        "missed", "incoming", None)
    recording = new("call.recording.completed", {
        "id": "AC9", "direction": "incoming", "duration": 70,
        "recordings": [{"id": "CR1", "duration": 40.4, "url": "https://x"},
                       {"id": "CR2", "duration": 30, "url": None}],
    })
    assert (recording.part.recordings, recording.part.recording_seconds) == (2, 70)
    voicemail = new("call.voicemail.completed", {
        "id": "AC10", "voicemailId": "VM1", "callId": "AC9", "duration": 31.6,
        "from": "+12125550101", "to": "+14155550100", "transcript": "call me",
        "recordingUrl": "https://x/vm.mp3",
    }, {})
    assert (voicemail.slot, voicemail.call_id, voicemail.part.duration) == ("voicemail", "AC9", 32)
    assert voicemail.part.external == ("+12125550101", "+14155550100")
    assert "https://x" not in msgspec.json.encode(voicemail.part).decode()
    summary = new("call.summary.completed", {
        "callId": "AC9", "processingStatus": "completed", "summary": ["s"], "nextSteps": None,
        "answeredByUserId": "US1", "handledByAiAgent": False, "jobs": [],
    })
    assert summary.part.summary == CallSummary(call_id="AC9", status="completed", summary=["s"])
    assert summary.part.answered_by == "US1"
    transcript = new("call.transcript.completed", {
        "callId": "AC9", "processingStatus": "completed", "duration": 4.5,
        "dialogue": [{"userId": None, "identifier": "+12125550101", "content": "hi",
                      "start": 0, "end": 1}],
    })
    assert transcript.part.transcript.dialogue == [
        DialogueLine(content="hi", start=0, end=1, identifier="+12125550101")]
    old = legacy("callSummary", {"callId": "AC9", "status": "completed", "summary": ["s"]})
    assert old.slot == "summary" and old.part.system == "legacy"


@pytest.mark.parametrize("resource", [
    {"callId": None, "transcript": "x"},  # a voicemail without its call
    {"id": "AC9", "duration": "long"},
])
def test_payloads_that_do_not_fit_raise_validation_errors(resource: dict[str, Any]) -> None:
    kind = "call.voicemail.completed" if "callId" in resource else "call.completed"
    with pytest.raises(msgspec.ValidationError):
        new(kind, resource)


# -- merging ---------------------------------------------------------------------------

SLOTS: list[Slot] = ["completed", "missed", "recording", "voicemail", "summary", "transcript"]
parts = st.builds(
    CallPart,
    system=st.sampled_from(["legacy", "2026-03-30"]),
    link=st.sampled_from([None, LINK, "https://my.quo.com/other"]),
    status=st.sampled_from([None, "answered", "completed", "unanswered"]),
    duration=st.sampled_from([None, 0, 55]),
    updated_at=st.sampled_from([None, "2026-01-01T00:00:00.000Z", "2026-01-01T00:01:00.000Z"]),
    voicemail_transcript=st.sampled_from([None, "", "call me"]),
    summary=st.sampled_from([None, CallSummary(call_id="AC9"),
                             CallSummary(call_id="AC9", summary=["s"])]),
    transcript=st.sampled_from([None, CallTranscript(call_id="AC9", dialogue=[
        DialogueLine(content="hi")])]),
)
events = st.lists(st.tuples(st.sampled_from(SLOTS), parts), max_size=8)


def merged(items: list[tuple[Slot, CallPart]]) -> CallRecord:
    return functools.reduce(lambda record, item: record.merge(*item), items, CallRecord())


@settings(max_examples=300, deadline=None, database=None)
@given(items=events, data=st.data())
def test_merge_is_the_same_in_any_order_and_idempotent(
    items: list[tuple[Slot, CallPart]], data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(items))
    record = merged(items)
    assert merged(shuffled) == record
    assert merged([*items, *shuffled]) == record  # every event again
    assert decode_record(encode_record(record)) == record


def test_the_richer_then_newer_system_part_wins() -> None:
    empty = CallPart(system="2026-03-30", summary=CallSummary(call_id="AC9"))
    full = CallPart(system="legacy", summary=CallSummary(call_id="AC9", summary=["s"]))
    newer = CallPart(system="2026-03-30", summary=CallSummary(call_id="AC9", summary=["s"]))
    assert merged([("summary", full), ("summary", empty)]).summary == full
    assert merged([("summary", newer), ("summary", full)]).summary == newer
    assert decode_record(b"not json") == CallRecord() == decode_record(None)
