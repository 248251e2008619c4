"""The activity logger against the Quo and Attio simulators on real sockets.

Events are real envelopes of both webhook systems (legacy `data.object`, 2026-03-30
`data.resource/context/links`) built by the Quo simulator from records it stores (so
`GET /v1/calls/{id}` & co. answer as Quo would); notes are checked in the Attio
simulator's state, and the `activities` / `quo_calls` rows in a real SQLite file.
New-system lifecycles are also replayed in every arrival order (hypothesis) with
duplicates, legacy twins and restarts: see `test_lifecycle_in_any_order_*`.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from support.activity import ALICE, ATTIO_KEY, BOB, DIALOGUE, STRANGER, TENANT, Env, activity_env

from crmsync.adapters.attio import AttioAdapter
from crmsync.adapters.base import NoteInput
from crmsync.adapters.errors import CrmApiError
from crmsync.domain.notes import MessageFacts, format_time, render_message
from crmsync.net.retry import RetryPolicy
from crmsync.quo.errors import QuoServerError


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with activity_env(tmp_path) as built:
        yield built


def logged_total(kind: str) -> float:
    value = REGISTRY.get_sample_value(
        "crmsync_activities_logged_total", {"tenant": TENANT, "kind": kind}
    )
    return value or 0.0


class Crash(Exception):  # noqa: N818 (a simulated process death, not an error)
    """The process dies here."""


class CrashAfterWrite(AttioAdapter):
    """Writes the note, then "dies" before anything else happens."""

    async def write_note(self, note: NoteInput) -> str:
        await super().write_note(note)
        raise Crash


# -- messages ---------------------------------------------------------------------------


async def test_incoming_message_logs_one_note_and_replay_is_a_no_op(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    message = env.quo_sim.add_message(ALICE, "Can you call me back?")
    kind, body = env.message_event(message)
    before = logged_total("message")

    assert await env.logger.handle(kind, body) == "logged"

    [note] = env.notes(alice)
    assert note["title"] == f"SMS from {ALICE} · {format_time(message['createdAt'])}"
    assert "Can you call me back?" in note["content_markdown"]
    assert f"quo:{message['id']}" in note["content_markdown"]
    row = await env.store.activities.get(TENANT, message["id"], alice)
    assert row is not None and row.kind == "message" and row.pending_hash is None
    assert row.crm_note_id == note["id"]["note_id"]
    assert logged_total("message") == before + 1

    assert await env.logger.handle(kind, body) == "unchanged"
    assert await env.new_logger().handle(kind, body) == "unchanged"
    assert len(env.notes(alice)) == 1
    assert env.notes_created == 1


async def test_outgoing_message_with_to_as_a_string(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    message = env.quo_sim.add_message(ALICE, "Your quote is ready", direction="outgoing")
    kind, body = env.message_event(message, to=ALICE)  # LH's fixtures: a plain string

    assert kind == "message.delivered"
    assert await env.logger.handle(kind, body) == "logged"
    [note] = env.notes(alice)
    assert note["title"].startswith(f"SMS to {ALICE} · ")
    assert "**Outbound SMS**" in note["content_markdown"]


async def test_shared_phone_gets_one_note_per_person(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    partner = env.attio_sim.add_person(first_name="Al", phones=[ALICE])
    message = env.quo_sim.add_message(ALICE, "Hello both")
    kind, body = env.message_event(message)

    assert await env.logger.handle(kind, body) == "logged"
    assert await env.logger.handle(kind, body) == "unchanged"

    assert len(env.notes(alice)) == 1
    assert len(env.notes(partner)) == 1
    rows = await env.store.activities.for_quo_object(TENANT, message["id"])
    assert sorted(r.crm_person_id for r in rows) == sorted([alice, partner])


async def test_unknown_phone_is_unmatched(env: Env) -> None:
    env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    message = env.quo_sim.add_message(STRANGER, "Who is this?")
    before = logged_total("unmatched")

    assert await env.logger.handle(*env.message_event(message)) == "unmatched"

    assert env.attio_sim.notes == {}
    assert await env.store.activities.for_quo_object(TENANT, message["id"]) == []
    assert logged_total("unmatched") == before + 1


async def test_workspace_own_number_is_ignored(env: Env) -> None:
    own = env.quo_sim.workspace.lines[1].number
    env.attio_sim.add_person(first_name="Office", phones=[own])  # even if a person has it
    # One of our lines texting another of our lines.
    message = env.quo_sim.add_message(own, "internal test")

    assert await env.logger.handle(*env.message_event(message)) == "ignored"
    assert env.attio_sim.notes == {}


async def test_people_lookups_and_own_numbers_are_cached(env: Env) -> None:
    env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    for text in ("one", "two", "three"):
        await env.logger.handle(*env.message_event(env.quo_sim.add_message(ALICE, text)))
    for text in ("four", "five"):
        await env.logger.handle(*env.message_event(env.quo_sim.add_message(STRANGER, text)))

    queries = env.attio_sim.stats.total(route="/v2/objects/{object}/records/query")
    assert queries == 2  # one per phone, the unknown one cached as negative
    assert env.quo_sim.count("GET", "/v1/phone-numbers") == 1


# -- calls ------------------------------------------------------------------------------


async def test_call_then_summary_then_transcript_enrich_one_note(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call = env.quo_sim.add_call([ALICE], duration=125)

    assert await env.logger.handle(*env.call_event(call)) == "logged"
    [first] = env.notes(alice)
    assert first["title"] == f"Inbound call from {ALICE} · {format_time(call['createdAt'])} · 2:05"
    assert "**Summary**" not in first["content_markdown"]

    summary = env.quo_sim.add_call_summary(call["id"], ["Wants a roof quote"], next_steps=["Visit"])
    assert await env.logger.handle(*env.summary_event(summary, "call.summary.completed")) == (
        "enriched"
    )
    [second] = env.notes(alice)
    assert second["id"] != first["id"]
    assert "- Wants a roof quote" in second["content_markdown"]

    transcript = env.quo_sim.add_call_transcript(call["id"], DIALOGUE)
    assert await env.logger.handle(*env.transcript_event(transcript, "callTranscript")) == (
        "enriched"
    )
    [final] = env.notes(alice)
    body = final["content_markdown"]
    assert "**Summary**" in body and "- Visit" in body
    assert f"**{ALICE}**: Tuesday works." in body
    assert body.count(f"quo:{call['id']}") == 1
    assert env.notes_created == 3  # the first two were deleted
    row = await env.store.activities.get(TENANT, call["id"], alice)
    assert row is not None and row.has_summary and row.has_transcript
    assert row.crm_note_id == final["id"]["note_id"]


async def test_summary_before_completion_ends_in_one_enriched_note(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call = env.quo_sim.add_call([ALICE], status="in-progress", duration=0)
    summary = env.quo_sim.add_call_summary(call["id"], ["Asked about prices"])

    # Quo already knows the (unfinished) call: the summary is logged right away.
    assert await env.logger.handle(*env.summary_event(summary, "callSummary")) == "logged"
    call.update(status="completed", duration=42)
    assert await env.logger.handle(*env.call_event(call)) == "enriched"

    [note] = env.notes(alice)
    assert note["title"].endswith(" · 0:42")
    assert "- Status: completed" in note["content_markdown"]
    assert "- Asked about prices" in note["content_markdown"]


async def test_summary_of_a_call_quo_does_not_know_yet_waits_for_the_call(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call = env.quo_sim.add_call([ALICE], duration=30)
    del env.quo_sim.workspace.calls[call["id"]]  # GET /v1/calls/{id} answers 404
    summary = env.quo_sim.add_call_summary(call["id"], ["Left a message"])
    kind, body = env.summary_event(summary, "call.summary.completed")
    del env.quo_sim.workspace.summaries[call["id"]]  # only the event carries it

    assert await env.logger.handle(kind, body) == "ignored"
    assert env.notes(alice) == []

    env.quo_sim.workspace.calls[call["id"]] = call
    assert await env.logger.handle(*env.call_event(call)) == "logged"
    [note] = env.notes(alice)
    assert "- Left a message" in note["content_markdown"]


PARTS = ("call", "summary", "transcript")


@pytest.mark.parametrize("call_known_early", [True, False], ids=["call-fetchable", "call-404"])
@pytest.mark.parametrize("order", list(itertools.permutations(PARTS)), ids="-".join)
async def test_any_order_converges_to_one_complete_note(
    env: Env, order: tuple[str, ...], call_known_early: bool
) -> None:
    """1. call.completed, summary and transcript events arrive in `order`
    2. each part becomes fetchable from Quo when its event fires (the call, before its
       completion, either already fetchable as in-progress or unknown: 404)
    3. everything is replayed, by this logger and by one with empty caches (a restart)
    Result: exactly one note, with every part; replays write nothing."""
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call = env.quo_sim.add_call([ALICE], status="in-progress", duration=0)
    if not call_known_early:
        del env.quo_sim.workspace.calls[call["id"]]
    spellings = itertools.cycle([True, False])
    events: list[tuple[str, bytes]] = []
    for part in order:
        if part == "call":
            call.update(status="completed", duration=185)
            env.quo_sim.workspace.calls[call["id"]] = call
            event = env.call_event(call)
        elif part == "summary":
            summary = env.quo_sim.add_call_summary(
                call["id"], ["Roof leaks", "Needs a quote"], next_steps=["Visit Tuesday"]
            )
            event = env.summary_event(
                summary, "call.summary.completed" if next(spellings) else "callSummary"
            )
        else:
            transcript = env.quo_sim.add_call_transcript(call["id"], DIALOGUE)
            event = env.transcript_event(
                transcript, "call.transcript.completed" if next(spellings) else "callTranscript"
            )
        events.append(event)
        assert await env.logger.handle(*event) in ("logged", "enriched", "ignored")
        assert len(env.notes(alice)) <= 1

    [note] = env.notes(alice)
    body = note["content_markdown"]
    assert note["title"] == f"Inbound call from {ALICE} · {format_time(call['createdAt'])} · 3:05"
    assert "- Status: completed" in body
    assert "- Roof leaks\n- Needs a quote" in body
    assert "- Visit Tuesday" in body
    assert f"**{ALICE}**: Tuesday works." in body
    assert "**Olivia Owner**: Sure, when can we come by?" in body  # named by GET /v1/users
    created = env.notes_created

    restarted = env.new_logger()
    for event in events:
        assert await env.logger.handle(*event) == "unchanged"
        assert await restarted.handle(*event) == "unchanged"
    assert [n["id"] for n in env.notes(alice)] == [note["id"]]
    assert env.notes_created == created


async def test_concurrent_events_of_one_call_write_one_note(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call = env.quo_sim.add_call([ALICE], duration=10)
    summary = env.quo_sim.add_call_summary(call["id"], ["Concurrent"])
    transcript = env.quo_sim.add_call_transcript(call["id"], DIALOGUE)

    outcomes = await asyncio.gather(
        env.logger.handle(*env.call_event(call)),
        env.logger.handle(*env.summary_event(summary, "callSummary")),
        env.logger.handle(*env.transcript_event(transcript, "call.transcript.completed")),
    )

    # One at a time (the call's lock): the first logs, the others enrich the note (or
    # find nothing new: the call's API answer stood in for its event).
    assert outcomes.count("logged") == 1
    assert set(outcomes) <= {"logged", "enriched", "unchanged"}
    [note] = env.notes(alice)
    assert "- Concurrent" in note["content_markdown"]
    assert "Tuesday works." in note["content_markdown"]
    assert env.notes_created == 3 - outcomes.count("unchanged")


async def test_call_with_empty_participants_is_fetched(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call = env.quo_sim.add_call([ALICE], duration=10)

    assert await env.logger.handle(*env.call_event(call, participants=[])) == "logged"
    [note] = env.notes(alice)
    assert f"**Inbound call** from {ALICE}" in note["content_markdown"]


async def test_group_calls_are_ignored(env: Env) -> None:
    env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call = env.quo_sim.add_call([ALICE, BOB], duration=10)
    summary = env.quo_sim.add_call_summary(call["id"], ["Three-way"])

    assert await env.logger.handle(*env.call_event(call)) == "ignored"
    # After a restart the stored record still names both participants: no GET.
    assert await env.new_logger().handle(*env.summary_event(summary, "callSummary")) == (
        "ignored"
    )
    assert env.quo_sim.count("GET", "/v1/calls/{id}") == 0
    # A summary of a group call whose call event never came: Quo answers 400 Too Many
    # Participants.
    other = env.quo_sim.add_call([ALICE, BOB], duration=10)
    other_summary = env.quo_sim.add_call_summary(other["id"], ["Three-way"])
    assert await env.logger.handle(*env.summary_event(other_summary, "callSummary")) == (
        "ignored"
    )
    assert env.quo_sim.count("GET", "/v1/calls/{id}", 400) == 1
    assert env.attio_sim.notes == {}


async def test_unknown_and_malformed_events_are_ignored(env: Env) -> None:
    call = env.quo_sim.add_call([ALICE])
    ringing = env.quo_sim.build_event("call.ringing", env.quo_sim.workspace.call_event_object(call))
    assert await env.logger.handle("call.ringing", ringing.body) == "ignored"
    assert await env.logger.handle("contact.updated", b'{"type": "contact.updated"}') == "ignored"
    assert await env.logger.handle("message.received", b"not json") == "ignored"
    assert await env.logger.handle("message.received", b'{"data": {"object": {}}}') == "ignored"
    assert await env.logger.handle("callSummary", b'{"data": {"object": {}}}') == "ignored"
    assert env.attio_sim.notes == {}


# -- failures and crashes ---------------------------------------------------------------


async def test_quo_failure_raises_and_a_retry_logs_once(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call = env.quo_sim.add_call([ALICE], duration=10)
    summary = env.quo_sim.add_call_summary(call["id"], ["Flaky"])
    event = env.summary_event(summary, "callSummary")  # names no participant: GET the call
    env.quo_sim.faults.fail_next = 2  # the call GET and its one retry
    env.quo_sim.faults.fail_route = "/v1/calls/{id}"

    with pytest.raises(QuoServerError):
        await env.logger.handle(*event)
    assert env.notes(alice) == []

    assert await env.logger.handle(*event) == "logged"
    [note] = env.notes(alice)
    assert "- Flaky" in note["content_markdown"]


async def test_crm_failure_raises_and_a_retry_logs_once(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    message = env.quo_sim.add_message(ALICE, "hi")
    event = env.message_event(message)
    env.adapter._http._retry = RetryPolicy(max_retries=0)  # fail fast, no backoff sleeps
    await env.logger.handle(*env.message_event(env.quo_sim.add_message(ALICE, "warm up")))
    env.attio_sim.faults.fail_next = 1  # POST /v2/notes answers 500

    with pytest.raises(CrmApiError):
        await env.logger.handle(*event)
    row = await env.store.activities.get(TENANT, message["id"], alice)
    assert row is not None and row.pending_hash is not None and row.crm_note_id is None

    assert await env.logger.handle(*event) == "logged"
    assert len(env.notes(alice)) == 2  # the warm-up message's and this one's


async def test_pending_marker_adopts_the_note_already_written(env: Env) -> None:
    """1. the logger committed `pending_hash` and wrote the note 2. the process died
    before saving the note id 3. the event is delivered again.
    Result: the existing note is adopted; no second note is written."""
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    message = env.quo_sim.add_message(ALICE, "Are you open on Sunday?")
    note = render_message(MessageFacts(
        id=message["id"], direction="incoming", other_party=ALICE, text=message["text"],
        created_at=message["createdAt"],
    ))
    await env.store.activities.set_pending(TENANT, message["id"], alice, "message",
                                           note.content_hash)
    written = await env.adapter.write_note(NoteInput(
        crm_object="people", person_id=alice, title=note.title, markdown=note.markdown,
    ))

    assert await env.new_logger().handle(*env.message_event(message)) == "logged"

    assert [n["id"]["note_id"] for n in env.notes(alice)] == [written]
    assert env.notes_created == 1
    row = await env.store.activities.get(TENANT, message["id"], alice)
    assert row is not None and row.crm_note_id == written and row.pending_hash is None
    assert row.content_hash == note.content_hash


async def test_pending_marker_without_a_note_writes_it(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    message = env.quo_sim.add_message(ALICE, "hello")
    await env.store.activities.set_pending(TENANT, message["id"], alice, "message", "h")

    assert await env.new_logger().handle(*env.message_event(message)) == "logged"
    assert len(env.notes(alice)) == 1
    assert env.notes_created == 1


async def test_crash_after_writing_an_enriched_note(env: Env) -> None:
    """1. a call is logged 2. its summary arrives; the enriched note is written and the
    process dies before deleting the old note or saving the new id 3. the summary
    event is delivered again. Result: one note, the enriched one; nothing rewritten."""
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call = env.quo_sim.add_call([ALICE], duration=10)
    assert await env.logger.handle(*env.call_event(call)) == "logged"
    summary = env.quo_sim.add_call_summary(call["id"], ["Booked a visit"])
    crashing = CrashAfterWrite(env.session, api_key=ATTIO_KEY, base_url=env.attio_url)

    event = env.summary_event(summary, "call.summary.completed")
    with pytest.raises(Crash):
        await env.new_logger(crashing).handle(*event)
    assert len(env.notes(alice)) == 2  # old and new, the id of the new one unsaved

    assert await env.new_logger().handle(*event) == "enriched"
    [note] = env.notes(alice)
    assert "- Booked a visit" in note["content_markdown"]
    assert env.notes_created == 2
    row = await env.store.activities.get(TENANT, call["id"], alice)
    assert row is not None and row.crm_note_id == note["id"]["note_id"]
    assert row.pending_hash is None and row.has_summary


async def test_crash_then_more_content_replaces_the_half_written_note(env: Env) -> None:
    """1. a call is logged 2. the summary's note is written, then the process dies
    3. the transcript event comes next (not the summary again).
    Result: one note with summary and transcript; the half-written one is deleted."""
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call = env.quo_sim.add_call([ALICE], duration=10)
    assert await env.logger.handle(*env.call_event(call)) == "logged"
    summary = env.quo_sim.add_call_summary(call["id"], ["Booked a visit"])
    crashing = CrashAfterWrite(env.session, api_key=ATTIO_KEY, base_url=env.attio_url)
    with pytest.raises(Crash):
        await env.new_logger(crashing).handle(*env.summary_event(summary, "callSummary"))

    transcript = env.quo_sim.add_call_transcript(call["id"], DIALOGUE)
    assert await env.new_logger().handle(*env.transcript_event(transcript, "callTranscript")) == (
        "enriched"
    )
    [note] = env.notes(alice)
    assert "- Booked a visit" in note["content_markdown"]
    assert "Tuesday works." in note["content_markdown"]
    assert env.notes_created == 3


async def test_find_note_ids_matches_the_whole_marker_across_pages(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    bob = env.attio_sim.add_person(first_name="Bob", phones=[BOB])

    async def write(person: str, text: str) -> str:
        return await env.adapter.write_note(
            NoteInput(crm_object="people", person_id=person, title="t", markdown=text)
        )

    template = env.attio_sim.notes[await write(alice, "filler\n\nquo:AC0")]
    for i in range(1, 55):  # more than one page of GET /v2/notes, without 55 POSTs
        note_id = f"filler-{i}"
        env.attio_sim.notes[note_id] = {
            **template, "id": {**template["id"], "note_id": note_id},
            "content_markdown": f"filler\n\nquo:AC{i}",
            "content_plaintext": f"filler\n\nquo:AC{i}",
        }
    wanted = await write(alice, "SMS\n\nquo:AC1")
    await write(alice, "SMS\n\nquo:AC1-x")
    await write(bob, "SMS\n\nquo:AC1")

    found = await env.adapter.find_note_ids("people", alice, "quo:AC1")
    assert found[-1] == wanted
    assert found == ["filler-1", wanted]  # not AC10..AC19, AC1-x or Bob's
