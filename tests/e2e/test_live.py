"""End to end, live: `crmsync run` as a subprocess receiving real webhooks from the sims.

Each test starts the daemon against 20 seeded people, waits until the initial sync is
done (`/readyz` 200, phase `live`), drives one live path through the simulators'
signed webhook deliveries, and stops the daemon with SIGTERM (exit 0).
"""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from support.e2e import assert_contact_matches, expected_contact
from support.live import TENANT, contact_of, inbox, live_env, notes_of, unique_phones

from crmsync.cli.inbox import short_event_id

pytestmark = pytest.mark.slow

PEOPLE = 20
WRONG_KEY = base64.b64encode(b"not the webhook key, 32 bytes..").decode()
UNKNOWN_PHONE = "+12025550187"  # valid, and no seeded person has it


async def test_crm_add_update_delete_reach_quo(tmp_path: Path) -> None:
    """Attio record webhooks drive Quo contact writes, one write per change.

    1. daemon live with 20 people synced (20 creates)
    2. add_person → signed `record.created` → a Quo contact with the person's fields
    3. update_person(job_title) → `record.updated` → the contact's role changes (1 PATCH)
    4. delete_person → `record.deleted` → the Quo contact is deleted (1 DELETE)
    Result: exactly one POST, PATCH and DELETE for the person; `crmsync mappings`
    keeps the row with action `deleted`; the rate limit was never exceeded.
    """
    async with live_env(tmp_path, people=PEOPLE) as env, env.daemon() as daemon:
        e2e = env.e2e
        assert len(e2e.quo_contacts()) == PEOPLE
        e2e.quo.reset_stats()

        record_id = env.attio.add_person(
            first_name="Grace", last_name="Hopper", emails=["grace@navy.example"],
            phones=["+14155552671"], job_title="Rear Admiral",
        )
        await daemon.wait_for(lambda: contact_of(e2e, record_id) is not None,
                              message="contact created")
        created = contact_of(e2e, record_id)
        assert created is not None
        assert_contact_matches(created, expected_contact(env.attio, record_id))

        env.attio.update_person(record_id, job_title="Commodore")

        def role() -> str | None:
            contact = contact_of(e2e, record_id)
            return None if contact is None else contact["defaultFields"]["role"]

        await daemon.wait_for(lambda: role() == "Commodore", message="contact updated")
        updated = contact_of(e2e, record_id)
        assert updated is not None and updated["id"] == created["id"]
        assert_contact_matches(updated, expected_contact(env.attio, record_id))

        env.attio.delete_person(record_id)
        await daemon.wait_for(lambda: contact_of(e2e, record_id) is None,
                              message="contact deleted")

        async def mapping_deleted() -> bool:
            rows = [m for m in await e2e.mappings() if m["crmRecordId"] == record_id]
            return len(rows) == 1 and rows[0]["action"] == "deleted"

        await daemon.wait_for(mapping_deleted, message="mapping action deleted")
        (row,) = [m for m in await e2e.mappings() if m["crmRecordId"] == record_id]
        assert row["quoContactId"] == created["id"]
        assert row["tenant"] == TENANT

        counts = e2e.request_counts()
        assert counts[("POST", "/v1/contacts")] == 1, counts
        assert counts[("PATCH", "/v1/contacts/{id}")] == 1, counts
        assert counts[("DELETE", "/v1/contacts/{id}")] == 1, counts
        assert len(e2e.quo_contacts()) == PEOPLE  # the others untouched
        e2e.assert_rate_respected()


async def test_message_becomes_exactly_one_note(tmp_path: Path) -> None:
    """A Quo SMS from a known phone is logged once, whatever the deliveries look like.

    1. daemon live; a seeded person with a phone no one else has
    2. message A delivered signed with a wrong key → 401, never stored
    3. message B delivered signed with the webhook's key → 200 → a note on the person
    4. B redelivered byte for byte, then re-signed → 200 each (duplicates)
    Result: the inbox holds B once, processed; the person has exactly one note, B's.
    """
    async with (
        live_env(tmp_path, people=PEOPLE, quo_webhooks="legacy") as env,
        env.daemon() as daemon,
    ):
        person, phone = next(iter(unique_phones(env.attio).items()))
        assert notes_of(env.attio, person) == []
        quo = env.quo

        rejected = quo.add_message(phone, "signed by an impostor")
        results = await quo.deliver_event(
            "message.received", quo.workspace.message_event_object(rejected),
            signing_key=WRONG_KEY,
        )
        assert [r.status for r in results] == [401], results
        bad_event_id = results[0].event.id

        accepted = quo.add_message(phone, "Hello from the live e2e test")
        results = await quo.deliver_event(
            "message.received", quo.workspace.message_event_object(accepted)
        )
        assert [r.status for r in results] == [200], results
        event = results[0].event

        await daemon.wait_for(lambda: len(notes_of(env.attio, person)) >= 1,
                              message="note on the person")
        assert [r.status for r in await quo.redeliver(event)] == [200]
        assert [r.status for r in await quo.redeliver(event, resign=True)] == [200]

        async def processed() -> bool:
            rows = [e for e in await inbox(env.e2e) if e["eventId"] == event.id]
            return len(rows) == 1 and rows[0]["state"] == "processed"

        await daemon.wait_for(processed, message="event processed")
        events = await inbox(env.e2e)
        assert [e["eventId"] for e in events] == [event.id], events  # A never stored
        assert bad_event_id != event.id
        (note,) = notes_of(env.attio, person)
        assert "Hello from the live e2e test" in note["content_markdown"]
        assert "impostor" not in note["content_markdown"]
        assert f"quo:{accepted['id']}" in note["content_markdown"]


async def test_call_note_grows_with_summary_and_transcript(tmp_path: Path) -> None:
    """A call's events arrive out of order; the person ends with one complete note.

    1. daemon live; a call with a seeded person, its summary ready in Quo
    2. `call.summary.completed` delivered before `call.completed` → a note with the
       summary (the call itself is fetched from Quo's API)
    3. `call.completed` → nothing new to say (same note)
    4. the transcript is ready; `call.transcript.completed` → the note is rewritten
       (Attio notes cannot be edited: new note, old one deleted)
    Result: exactly one note, holding the summary and the transcript.
    """
    async with (
        live_env(tmp_path, people=PEOPLE, quo_webhooks="legacy") as env,
        env.daemon() as daemon,
    ):
        person, phone = next(iter(unique_phones(env.attio).items()))
        quo = env.quo
        call = quo.add_call([phone], duration=95)
        summary = quo.add_call_summary(call["id"], ["Customer asked about the Q3 renewal."])

        async def processed(count: int) -> bool:
            events = await inbox(env.e2e)
            return len(events) == count and all(e["state"] == "processed" for e in events)

        results = await quo.deliver_event(
            "call.summary.completed", quo.workspace.summary_event_object(summary)
        )
        assert [r.status for r in results] == [200], results
        await daemon.wait_for(lambda: processed(1), message="summary event processed")
        (first,) = notes_of(env.attio, person)
        assert "Q3 renewal" in first["content_markdown"]

        results = await quo.deliver_event("call.completed", quo.workspace.call_event_object(call))
        assert [r.status for r in results] == [200], results
        await daemon.wait_for(lambda: processed(2), message="call event processed")
        assert len(notes_of(env.attio, person)) == 1

        transcript = quo.add_call_transcript(call["id"], [
            ("Hi, calling about the renewal.", phone),
            ("Sure, let me pull up your account.", None),
        ])
        results = await quo.deliver_event(
            "call.transcript.completed", quo.workspace.transcript_event_object(transcript)
        )
        assert [r.status for r in results] == [200], results
        await daemon.wait_for(lambda: processed(3), message="transcript event processed")
        (note,) = notes_of(env.attio, person)
        content = note["content_markdown"]
        assert "Q3 renewal" in content
        assert "let me pull up your account" in content
        assert f"quo:{call['id']}" in content
        assert len(env.attio.notes) == 1  # nobody else got one


async def test_message_from_unknown_phone_is_processed_without_note(tmp_path: Path) -> None:
    """A message nobody in the CRM sent is settled, not retried, and harms nothing.

    1. daemon live
    2. `message.received` from a phone no person has → 200
    Result: the inbox shows the event processed; no note anywhere; `/readyz` still 200
    and the daemon keeps running (then stops cleanly on SIGTERM).
    """
    async with (
        live_env(tmp_path, people=PEOPLE, quo_webhooks="legacy") as env,
        env.daemon() as daemon,
    ):
        phones = {p for r in env.attio.people for p in env.attio.person_phones(r.record_id)}
        assert UNKNOWN_PHONE not in phones
        message = env.quo.add_message(UNKNOWN_PHONE, "wrong number?")
        results = await env.quo.deliver_event(
            "message.received", env.quo.workspace.message_event_object(message)
        )
        assert [r.status for r in results] == [200], results
        event_id = results[0].event.id

        async def processed() -> bool:
            rows = [e for e in await inbox(env.e2e) if e["eventId"] == event_id]
            return len(rows) == 1 and rows[0]["state"] == "processed"

        await daemon.wait_for(processed, message="unknown-phone event processed")
        assert env.attio.notes == {}
        status, body = await daemon.get("/readyz")
        assert status == 200, body
        assert daemon.running
        # The human listing too (wide: rich squeezes columns to 80 without a terminal).
        listing = await env.e2e.cli("inbox", "--tenant", TENANT, env={"COLUMNS": "250"})
        assert listing.code == 0, listing.describe()
        shown = short_event_id(event_id)  # the table cuts long ids to head…tail
        (line,) = [ln for ln in listing.out.splitlines() if shown in ln]
        assert "message.received" in line and "processed" in line, listing.out


async def test_readyz_is_not_ready_before_the_tenant_runs(tmp_path: Path) -> None:
    """Readiness must not be claimed while a tenant has not even started.

    1. a first daemon creates and migrates the state database, syncs, stops (exit 0)
    2. the test holds the database's write lock, as a concurrent `crmsync inbox replay`
       or `crmsync sync` would: the next daemon's tenant cannot record its state yet
    3. a second daemon starts; its listener binds and answers
    4. the lock is released; the daemon goes live
    Result: the first `/readyz` answer is 503 (INTERFACE §4: 200 only when every
    enabled tenant is running). (Regression test: app.py once bound the listener
    before any tenant had set a not-ready reason, and answered 200 here.)
    """
    async with live_env(tmp_path, people=PEOPLE) as env:
        async with env.daemon():
            pass
        lock = sqlite3.connect(env.e2e.state_path, isolation_level=None, timeout=5)
        first_answer: list[int] = []
        try:
            lock.execute("BEGIN IMMEDIATE")
            daemon = await env.start(wait=False)

            async def answered() -> bool:
                try:
                    status, _ = await daemon.get("/readyz")
                except (aiohttp.ClientError, TimeoutError):
                    return False
                first_answer.append(status)
                return True

            await daemon.wait_for(answered, within=30, message="/readyz answers")
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        await daemon.wait_ready()
        assert await daemon.terminate() == 0, daemon.output
        assert first_answer == [503]


async def test_sms_dead_lettered_in_a_crm_outage_is_noted_once_after_retry(
    tmp_path: Path,
) -> None:
    """An SMS that outlived its retry window during a CRM outage is not lost.

    1. daemon live, with a retry window of 0.002 h (7.2 s) and one HTTP retry per call
    2. Attio goes down (every request answers 500)
    3. a Quo SMS from a seeded person → 200; each attempt fails; after 7.2 s the event
       is `failed` and a `webhook_failed` dead letter holds it
    4. SIGTERM (exit 0); Attio comes back
    5. `crmsync retry --tenant acme --all` with no daemon running
    6. `crmsync run` again
    Result: the retry reports the webhook event pending again and the inbox shows it
    so; the new daemon writes the SMS note; the person has exactly one note, the event
    is processed once and no dead letter is left open. (Regression test: retry only
    resolved the dead letter, the row stayed `failed` and no note was ever written.)
    """
    async with live_env(
        tmp_path, people=PEOPLE, daemon_options={"inbox_retry_hours": "0.002"},
        quo_options={"max_retries": "1"}, quo_webhooks="legacy",
    ) as env:
        e2e = env.e2e
        person, phone = next(iter(unique_phones(env.attio).items()))
        async with env.daemon() as daemon:
            env.attio.faults.fail_next = 10**9  # the CRM is down
            message = env.quo.add_message(phone, "Can we move the demo to Friday?")
            results = await env.quo.deliver_event(
                "message.received", env.quo.workspace.message_event_object(message)
            )
            assert [r.status for r in results] == [200], results
            event_id = results[0].event.id

            async def dead_lettered() -> bool:
                letters = await e2e.dead_letters()
                return [(d["category"], d["crmRecordId"]) for d in letters] == [
                    ("webhook_failed", event_id)]

            await daemon.wait_for(dead_lettered, within=60, message="event dead-lettered")
            (event,) = [e for e in await inbox(e2e) if e["eventId"] == event_id]
            assert event["state"] == "failed", event
            assert event["attempts"] >= 2, event  # it was retried before giving up
        env.attio.faults.fail_next = 0  # the CRM is back
        assert notes_of(env.attio, person) == []

        retried = await e2e.cli("retry", "--tenant", TENANT, "--all")
        assert retried.code == 0, retried.describe()
        assert "re-queued 1 dead letter (webhook_failed: 1)" in retried.out, retried.out
        assert "1 webhook event is pending again" in retried.out, retried.out
        (event,) = [e for e in await inbox(e2e) if e["eventId"] == event_id]
        assert (event["state"], event["attempts"]) == ("pending", 0), event

        async with env.daemon() as daemon:

            async def processed() -> bool:
                rows = [e for e in await inbox(e2e) if e["eventId"] == event_id]
                return len(rows) == 1 and rows[0]["state"] == "processed"

            await daemon.wait_for(processed, message="re-queued event processed")
        (note,) = notes_of(env.attio, person)
        assert "Can we move the demo to Friday?" in note["content_markdown"]
        assert f"quo:{message['id']}" in note["content_markdown"]
        assert len(env.attio.notes) == 1  # nobody else got one
        assert await e2e.dead_letters() == []
