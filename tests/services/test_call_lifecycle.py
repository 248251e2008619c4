"""The whole call lifecycle and SMS of Quo's 2026-03-30 webhooks, through the activity logger.

Events are 2026-03-30 envelopes (`data.resource/context/links`) the Quo simulator
builds from the records it stores, some with their legacy twins (the same occurrence
as a legacy webhook delivers it during a migration); notes are read back from the
Attio simulator. The property at the end replays each lifecycle in every arrival
order, each event twice and through both systems, with a restart anywhere: one note,
the same note as in the canonical order, and a replay of everything changes nothing.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.activity import (
    ALICE,
    BOB,
    DIALOGUE,
    TENANT,
    Env,
    Parts,
    activity_env,
)

from crmsync.domain.notes import format_time
from crmsync.services.activity import ActivityLogger
from crmsync.sim.quo.wire import JsonObject

VOICEMAIL = "Hi, it's Alice about the roof. Please call me back."
AUDIO_HOST = "files.quo.example"  # where the simulator's expiring audio URLs point
LIFECYCLE = settings(
    max_examples=30, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_phones = itertools.count(1000)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with activity_env(tmp_path) as built:
        yield built


def new_phone() -> str:
    return f"+1646555{next(_phones):04d}"


def answered_call(env: Env, phone: str) -> tuple[JsonObject, list[tuple[str, Parts]]]:
    """An answered call with a recording, a summary and a transcript, all stored."""
    sim = env.quo_sim
    call = sim.add_call([phone], duration=185)
    sim.workspace.add_call_recording(call["id"])
    sim.add_call_summary(call["id"], ["Roof leaks", "Needs a quote"], next_steps=["Visit"])
    sim.add_call_transcript(call["id"], [(text, phone if who else None)
                                         for text, who in DIALOGUE])
    return call, [
        ("call.completed", sim.payloads.call_completed(call)),
        ("call.recording.completed", sim.payloads.recording(call)),
        ("call.summary.completed", sim.payloads.summary(call)),
        ("call.transcript.completed", sim.payloads.transcript(call)),
    ]


def missed_call(env: Env, phone: str) -> tuple[JsonObject, list[tuple[str, Parts]]]:
    """A missed call with a voicemail, all stored."""
    sim = env.quo_sim
    call = sim.add_call([phone], status="missed", duration=0)
    sim.workspace.add_call_voicemail(call["id"], transcript=VOICEMAIL, duration=32)
    activity = sim.ids.prefixed("AC")
    return call, [
        ("call.missed", sim.payloads.call_missed(call)),
        ("call.completed", sim.payloads.call_completed(call)),
        ("call.voicemail.completed", sim.payloads.voicemail(call, activity)),
    ]


LIFECYCLES = {"answered": answered_call, "missed": missed_call}


def deliveries(env: Env, events: list[tuple[str, Parts]]) -> list[tuple[str, bytes]]:
    """Each event as the new webhook delivers it, twice, and its legacy twin if any."""
    out = []
    for kind, parts in events:
        delivery = env.v2(kind, parts)
        out += [delivery, delivery]
        twin = env.legacy_twin(kind, parts)
        if twin is not None:
            out.append(twin)
    return out


# -- messages ---------------------------------------------------------------------------


async def test_sms_of_the_new_system_in_both_directions(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    incoming = env.quo_sim.add_message(ALICE, "Is Tuesday fine?")
    outgoing = env.quo_sim.add_message(ALICE, "Tuesday it is", direction="outgoing")

    for message, kind in ((incoming, "message.received"), (outgoing, "message.delivered")):
        assert await env.logger.handle(*env.v2(kind, env.quo_sim.payloads.message(message))) \
            == "logged"

    notes = {n["title"]: n["content_markdown"] for n in env.notes(alice)}
    time = format_time(incoming["createdAt"])
    assert set(notes) == {f"SMS from {ALICE} · {time}",
                          f"SMS to {ALICE} · {format_time(outgoing['createdAt'])}"}
    body = notes[f"SMS from {ALICE} · {time}"]
    assert f"**Inbound SMS** from {ALICE}" in body
    assert "Is Tuesday fine?" in body
    assert "- [Open in Quo](https://my.quo.com/inbox/" in body
    assert body.endswith(f"quo:{incoming['id']}")


async def test_sms_through_both_systems_is_one_note_never_rewritten(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    first = env.quo_sim.add_message(ALICE, "legacy first")
    second = env.quo_sim.add_message(ALICE, "new first")
    outcomes = []
    for message, new_first in ((first, False), (second, True)):
        parts = env.quo_sim.payloads.message(message)
        new, legacy = env.v2("message.received", parts), env.legacy_twin(
            "message.received", parts)
        assert legacy is not None
        for delivery in ((new, legacy) if new_first else (legacy, new)):
            outcomes.append(await env.logger.handle(*delivery))
        outcomes.append(await env.new_logger().handle(*new))

    assert outcomes == ["logged", "unchanged", "unchanged"] * 2
    assert len(env.notes(alice)) == 2
    assert env.notes_created == 2


async def test_message_from_our_own_line_is_ignored(env: Env) -> None:
    env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    message = env.quo_sim.add_message(ALICE, "internal")
    resource, context, links = env.quo_sim.payloads.message(message)
    context = {**context, "senderIdentifier": env.own_number}
    assert await env.logger.handle(*env.v2("message.received", (resource, context, links))) \
        == "ignored"
    assert env.attio_sim.notes == {}


# -- calls ------------------------------------------------------------------------------


async def test_missed_call_with_voicemail_is_one_note(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call, events = missed_call(env, ALICE)
    outcomes = [await env.logger.handle(*env.v2(kind, parts)) for kind, parts in events]

    assert outcomes == ["logged", "enriched", "enriched"]
    [note] = env.notes(alice)
    when = format_time(call["createdAt"])
    assert note["title"] == f"Missed call from {ALICE} · {when} · voicemail"
    body = note["content_markdown"]
    assert body.startswith(f"**Missed call** from {ALICE}\n\n- Time: {when}\n")
    assert "- Status: not answered" in body
    assert "- Voicemail: 0:32" in body
    assert f"**Voicemail**\n{VOICEMAIL}\n" in body
    assert "- [Open in Quo](https://my.quo.com/inbox/" in body
    assert AUDIO_HOST not in body
    assert body.endswith(f"quo:{call['id']}")
    assert env.quo_sim.count("GET", "/v1/calls/{id}") == 0  # the events said it all


async def test_answered_call_names_who_answered_and_who_spoke(env: Env) -> None:
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    logger = env.logger
    call, events = answered_call(env, ALICE)
    for kind, parts in events:
        assert await logger.handle(*env.v2(kind, parts)) in ("logged", "enriched")

    [note] = env.notes(alice)
    assert note["title"] == f"Inbound call from {ALICE} · {format_time(call['createdAt'])} · 3:05"
    body = note["content_markdown"]
    for line in ("- Duration: 3:05", "- Status: answered", "- Answered by: Olivia Owner",
                 "- Recording: 3:05, to play in Quo", "**Summary**\n- Roof leaks\n- Needs a quote",
                 "**Next steps**\n- Visit",
                 f"**{ALICE}**: Hi, I'd like a quote for the roof.",
                 "**Olivia Owner**: Sure, when can we come by?"):
        assert line in body, line
    assert AUDIO_HOST not in body  # the recording is linked through the call, never copied
    assert env.quo_sim.count("GET", "/v1/users") == 1
    # A user Quo's listing does not know (one who left the workspace): the id stands in.
    del env.quo_sim.workspace.users[env.owner]
    plain = env.new_logger(tenant="plain")
    await env.store.tenants.upsert("plain", "attio")
    for kind, parts in events:
        await plain.handle(*env.v2(kind, parts))
    row = await env.store.activities.get("plain", call["id"], alice)
    assert row is not None
    other = env.attio_sim.notes[row.crm_note_id or ""]["content_markdown"]
    assert f"**{env.owner}**: Sure, when can we come by?" in other


async def test_a_restart_forgets_nothing_the_events_said(env: Env) -> None:
    """1. the voicemail event logs the call (Quo's API stands in for the call itself)
    2. restart 3. `call.completed`, then `call.missed`
    Result: the note still holds the voicemail's transcript, which only its event
    carried (kept in `quo_calls`), and ends as in test_missed_call_with_voicemail."""
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call, events = missed_call(env, ALICE)
    missed, completed, voicemail = (env.v2(kind, parts) for kind, parts in events)

    assert await env.logger.handle(*voicemail) == "logged"
    assert env.quo_sim.count("GET", "/v1/calls/{id}") == 1
    assert await env.store.quo_calls.get(TENANT, call["id"]) is not None
    restarted = env.new_logger()
    assert await restarted.handle(*completed) == "enriched"
    assert await restarted.handle(*missed) in ("enriched", "unchanged")

    [note] = env.notes(alice)
    assert VOICEMAIL in note["content_markdown"]
    assert note["title"].endswith(" · voicemail")
    assert env.quo_sim.count("GET", "/v1/calls/{id}") == 1


async def test_a_note_from_before_the_record_keeps_its_summary(env: Env) -> None:
    """1. a call and its summary were logged by an older crmsync (no stored record)
    2. `call.completed` arrives. Result: the summary is read from Quo's API once (the
    note said it had one), so the rewrite does not drop it; then it is kept."""
    alice = env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    call = env.quo_sim.add_call([ALICE], duration=60)
    summary = env.quo_sim.add_call_summary(call["id"], ["Wants a quote"])
    assert await env.logger.handle(*env.summary_event(summary, "callSummary")) == "logged"
    await env.store.quo_calls.prune(TENANT, float("inf"))  # as if written before 0.7

    assert await env.new_logger().handle(*env.call_event(call)) == "unchanged"
    assert await env.new_logger().handle(*env.call_event(call)) == "unchanged"
    [note] = env.notes(alice)
    assert "- Wants a quote" in note["content_markdown"]
    assert env.quo_sim.count("GET", "/v1/call-summaries/{id}") == 1


async def test_call_records_are_pruned_by_age(env: Env) -> None:
    env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    logger = ActivityLogger(TENANT, quo=env.quo, adapter=env.adapter, store=env.store,
                            call_retention=0.0)
    old = env.quo_sim.add_call([ALICE], duration=5)
    assert await logger.handle(*env.call_event(old)) == "logged"
    assert await env.store.quo_calls.get(TENANT, old["id"]) is not None
    logger._next_prune = float("-inf")  # an hour has passed
    new = env.quo_sim.add_call([ALICE], duration=6)
    assert await logger.handle(*env.call_event(new)) == "logged"
    assert await env.store.quo_calls.get(TENANT, old["id"]) is None
    assert await env.store.quo_calls.get(TENANT, new["id"]) is not None


async def test_events_that_name_no_call_or_too_many_people_are_ignored(env: Env) -> None:
    env.attio_sim.add_person(first_name="Alice", phones=[ALICE])
    sim = env.quo_sim
    call = sim.add_call([ALICE], status="missed", duration=0)
    sim.workspace.add_call_voicemail(call["id"], transcript="hi", duration=3)
    resource, context, links = sim.payloads.voicemail(call, sim.ids.prefixed("AC"))
    orphan = env.v2("call.voicemail.completed", ({**resource, "callId": None}, context, links))
    assert await env.logger.handle(*orphan) == "ignored"

    group = sim.add_call([ALICE, BOB], duration=10)
    assert await env.logger.handle(*env.v2("call.completed", sim.payloads.call_completed(group))) \
        == "ignored"
    ringing = env.v2("call.ringing", sim.payloads.call_missed(call))
    assert await env.logger.handle(*ringing) == "ignored"
    assert env.attio_sim.notes == {}


# -- any arrival order ------------------------------------------------------------------


async def reference_note(env: Env, events: list[tuple[str, Parts]], person: str,
                         call_id: str) -> dict[str, object]:
    """The note of the canonical order (each new-system event once), via another tenant."""
    tenant = f"ref-{call_id}"
    await env.store.tenants.upsert(tenant, "attio")
    logger = env.new_logger(tenant=tenant)
    for kind, parts in events:
        await logger.handle(*env.v2(kind, parts))
    row = await env.store.activities.get(tenant, call_id, person)
    assert row is not None and row.crm_note_id is not None
    return env.attio_sim.notes[row.crm_note_id]


@LIFECYCLE
@given(data=st.data(), lifecycle=st.sampled_from(sorted(LIFECYCLES)))
async def test_lifecycle_in_any_order_is_one_note(
    env: Env, data: st.DataObject, lifecycle: str
) -> None:
    """1. a call's lifecycle events, each delivered twice by the new webhook and once by
       a legacy one where legacy has the event, arrive in a drawn order
    2. the process restarts at a drawn point (caches lost, the store kept)
    3. everything is delivered again, shuffled, to a fresh process
    Result: one note on the person all along and at the end; the same note (title,
    body, time) as the canonical order gives; step 3 writes nothing."""
    phone = new_phone()
    person = env.attio_sim.add_person(first_name="Pat", phones=[phone])
    call, events = LIFECYCLES[lifecycle](env, phone)
    expected = await reference_note(env, events, person, call["id"])
    arrivals = data.draw(st.permutations(deliveries(env, events)), label="order")
    restart_at = data.draw(st.integers(0, len(arrivals)), label="restart at")

    logger = env.new_logger()
    for i, delivery in enumerate(arrivals):
        if i == restart_at:
            logger = env.new_logger()
        assert await logger.handle(*delivery) in ("logged", "enriched", "unchanged")
        rows = await env.store.activities.for_quo_object(TENANT, call["id"])
        assert len(rows) == 1

    [row] = await env.store.activities.for_quo_object(TENANT, call["id"])
    note = env.attio_sim.notes[row.crm_note_id or ""]
    assert (note["title"], note["content_markdown"], note["created_at"]) == (
        expected["title"], expected["content_markdown"], expected["created_at"])
    assert len(env.notes(person)) == 2  # this tenant's and the reference tenant's
    written = env.notes_created
    replay = list(arrivals)
    random.Random(restart_at).shuffle(replay)
    fresh = env.new_logger()
    for delivery in replay:
        assert await fresh.handle(*delivery) == "unchanged"
    assert env.notes_created == written
