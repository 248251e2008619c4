"""End to end: SMS and whole call lifecycles of the 2026-03-30 system become one note each.

1. `crmsync run` (a subprocess) on the new system: its one webhook at the Quo simulator
2. a second webhook delivers to the daemon too (same key, the same events: Quo gives
   every subscription the same event id), so every event arrives through two webhooks
3. for five CRM people: an SMS in and one out; a missed call with a voicemail; an
   answered call with its recording, summary and transcript; a missed call without
   voicemail; and a call told by the simulator's one-call helpers in their natural
   order. The calls' events are published interleaved, in a seeded random order
   (summary before the call, voicemail before the miss, ...)
4. every delivery is attempted a second time (Quo's manual retry: the same
   `webhook-id`)
Result: every attempt is answered 2xx; the inbox holds each event once; each SMS and
each call has exactly one note on its person, with everything its events said
(voicemail transcript, summary, next steps, transcript, a link to the call in Quo and
never an audio URL), and nobody else got one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from support.live import LiveEnv, inbox, live_env, notes_of, unique_phones

from crmsync.sim.quo.publish import Publication
from crmsync.sim.quo.wire import JsonObject

pytestmark = pytest.mark.slow

PEOPLE = 12
SEED = 20261130
VOICEMAIL = "Hi, it's about the invoice, please call me back."
AUDIO_HOST = "files.quo.example"  # where the simulator's expiring audio URLs point
ACTIVITY = ("message.", "call.")


def second_webhook(env: LiveEnv) -> JsonObject:
    """A copy of the daemon's webhook: another subscription of the same endpoint."""
    quo = env.quo
    (hook,) = quo.webhooks_v2.values()
    clone = {**hook, "id": quo.hook_ids.webhook(), "url": f"{hook['url']}?via=second"}
    quo.webhooks_v2[clone["id"]] = clone
    return clone


async def deliver_again(env: LiveEnv, publications: list[Publication]) -> None:
    """Quo's manual retry of every delivery: one more attempt, same `webhook-id`."""
    for publication in publications:
        assert len(publication.deliveries) == 2, publication.deliveries
        for delivery in publication.deliveries:
            assert await env.quo.hooks.attempt(delivery, "manual")


def call_events(env: LiveEnv, phones: list[str]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """Three calls stored in full (what `GET /v1/...` answers), and their events."""
    quo, space = env.quo, env.quo.workspace
    voicemail_phone, answered_phone, silent_phone = phones
    missed = quo.add_call([voicemail_phone], status="missed", duration=0)
    space.add_call_voicemail(missed["id"], transcript=VOICEMAIL, duration=41)
    answered = quo.add_call([answered_phone], duration=245)
    space.add_call_recording(answered["id"])
    quo.add_call_summary(answered["id"], ["Asked for the Q3 price list."],
                         next_steps=["Email the price list"])
    quo.add_call_transcript(answered["id"], [
        ("Hello, could I get the Q3 price list?", answered_phone),
        ("Of course, I'll email it today.", None),
    ])
    silent = quo.add_call([silent_phone], status="no-answer", duration=0)
    payloads = quo.payloads
    events = [
        ("call.missed", payloads.call_missed(missed)),
        ("call.completed", payloads.call_completed(missed)),
        ("call.voicemail.completed", payloads.voicemail(missed, quo.ids.prefixed("AC"))),
        ("call.completed", payloads.call_completed(answered)),
        ("call.recording.completed", payloads.recording(answered)),
        ("call.summary.completed", payloads.summary(answered)),
        ("call.transcript.completed", payloads.transcript(answered)),
        ("call.missed", payloads.call_missed(silent)),
        ("call.completed", payloads.call_completed(silent)),
    ]
    return {"missed": missed, "answered": answered, "silent": silent}, events


async def test_sms_and_call_lifecycles_in_any_order_are_one_note_each(tmp_path: Path) -> None:
    async with live_env(tmp_path, people=PEOPLE) as env, env.daemon() as daemon:
        quo = env.quo
        second_webhook(env)
        (sms_person, sms_phone), *rest = list(unique_phones(env.attio).items())[:5]
        people = dict(rest)
        phones = list(people.values())
        calls, events = call_events(env, phones[:3])
        random.Random(SEED).shuffle(events)

        publications = [
            await quo.sms(sms_phone, "Do you deliver on Saturdays?"),
            await quo.sms(sms_phone, "Yes, until noon.", direction="outgoing"),
        ]
        for kind, (resource, context, links) in events:
            publications.append(await quo.publish(kind, resource, context=context, links=links))
        # The one-call helpers, in the order Quo fires them.
        helper = await quo.call_missed(phones[3])
        helper_call = helper.resource
        publications += [
            helper,
            await quo.voicemail(helper_call, transcript="Just checking in.", duration=12),
            await quo.call_completed(helper_call),
        ]
        await deliver_again(env, publications)
        for publication in publications:
            for delivery in publication.deliveries:
                codes = [a.response_status_code for a in delivery.attempts]
                assert codes == [200, 200], (publication.event_type, codes)

        wanted = {p.event_id for p in publications}

        async def settled() -> bool:
            rows = [e for e in await inbox(env.e2e) if e["eventType"].startswith(ACTIVITY)]
            return {e["eventId"] for e in rows} == wanted and all(
                e["state"] == "processed" for e in rows)

        await daemon.wait_for(settled, within=60, message="every event processed")
        rows = [e for e in await inbox(env.e2e) if e["eventType"].startswith(ACTIVITY)]
        assert len(rows) == len(wanted)  # each event stored once, whatever came twice

        sms_notes = {n["title"].split(" · ")[0]: n for n in notes_of(env.attio, sms_person)}
        assert set(sms_notes) == {f"SMS from {sms_phone}", f"SMS to {sms_phone}"}
        assert "Do you deliver on Saturdays?" in sms_notes[f"SMS from {sms_phone}"][
            "content_markdown"]
        assert "Yes, until noon." in sms_notes[f"SMS to {sms_phone}"]["content_markdown"]

        def one_note(phone: str, call_id: str) -> str:
            person = next(p for p, number in people.items() if number == phone)
            (note,) = notes_of(env.attio, person)
            body = str(note["content_markdown"])
            assert body.endswith(f"quo:{call_id}"), body
            assert "- [Open in Quo](https://my.quo.com/inbox/" in body
            assert AUDIO_HOST not in body
            return f"{note['title']}\n{body}"

        voicemail = one_note(phones[0], calls["missed"]["id"])
        assert voicemail.startswith(f"Missed call from {phones[0]} · ")
        assert voicemail.splitlines()[0].endswith(" · voicemail")
        assert "- Voicemail: 0:41" in voicemail and VOICEMAIL in voicemail
        answered = one_note(phones[1], calls["answered"]["id"])
        assert answered.splitlines()[0].startswith(f"Inbound call from {phones[1]} · ")
        assert answered.splitlines()[0].endswith(" · 4:05")
        for line in ("- Status: answered", "- Recording: 4:05, to play in Quo",
                     "**Summary**\n- Asked for the Q3 price list.",
                     "**Next steps**\n- Email the price list",
                     f"**{phones[1]}**: Hello, could I get the Q3 price list?",
                     ": Of course, I'll email it today."):
            assert line in answered, (line, answered)
        silent = one_note(phones[2], calls["silent"]["id"])
        assert silent.splitlines()[0].startswith(f"Missed call from {phones[2]} · ")
        assert "- Status: not answered" in silent and "Voicemail" not in silent
        helped = one_note(phones[3], helper_call["id"])
        assert "Just checking in." in helped and "- Voicemail: 0:12" in helped

        # Nobody else got a note: 2 SMS and 4 calls.
        assert len(env.attio.notes) == 6, [n["title"] for n in env.attio.notes.values()]
