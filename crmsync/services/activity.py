"""Activity logger: Quo messages and calls become CRM notes, exactly once per person.

The webhook inbox processor calls `handle(event_type, body)` with each stored Quo
event, in either envelope (legacy `data.object` or 2026-03-30 `data.resource`); it
returns an outcome label and raises on CRM or Quo failures so the event is retried
later. One note per (message or call, matched person), tracked in `activities`.

A message's note is written once and never rewritten: a message does not change, and
the same message delivered by both webhook systems must not flip its note between
the two envelopes' wording.

A call's note grows: `call.completed`, `call.missed`, its recording, voicemail,
summary and transcript arrive in any order, hours apart, across restarts. Each event
is merged into the call's stored record (`quo_calls`, `quo_events.CallRecord`: one
slot per event type, merged the same in any order), and the note is rendered from the
record alone, each fact read by a fixed precedence of slots. Quo's API fills in only
for a call none of whose own events (completed, missed, recording) has arrived yet:
`GET /v1/calls/{id}` for the direction, time and participants, the summary and
transcript routes only when a note written before the record existed (an upgrade)
showed them. So the same events give the same note in any order, and a replay, a
restart or a duplicate through the other webhook system changes nothing. The rendered
hash is compared with the row's: equal → `unchanged`; no note yet → create (`logged`);
different → create the new note, delete the old one (`enriched`): Attio notes cannot
be updated.

Exactly once across crashes, per (activity, person):
  1. `set_pending(hash)` is committed before the note is written;
  2. the note is written, then the note it replaces is deleted;
  3. `finish_write` saves the new note id and clears the marker.
A crash between 1 and 3 leaves the marker. The next event of that activity first lists
the person's notes carrying `quo:<id>` and adopts the one written (deleting
leftovers) instead of writing another. The replaced note is deleted *before* step 3
so that no crash can leave it behind unrecorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

from crmsync import metrics
from crmsync.adapters.base import CrmAdapter, NoteInput
from crmsync.domain.notes import (
    CallFacts,
    MessageFacts,
    Note,
    VoicemailFacts,
    has_summary,
    has_transcript,
    marker,
    render_call,
    render_message,
)
from crmsync.net.ratelimit import Lane
from crmsync.quo.client import QuoClient
from crmsync.quo.envelope import EnvelopeError, decode
from crmsync.quo.errors import QuoNotFoundError, QuoValidationError
from crmsync.quo.models import Call, CallSummary, CallTranscript, User
from crmsync.services.quo_events import (
    KNOWN_EVENTS,
    LEGACY,
    CallEvent,
    CallPart,
    CallRecord,
    MessageEvent,
    api_part,
    decode_record,
    encode_record,
    parse_event,
)
from crmsync.store import Activity, ActivityKind, Store

log = logging.getLogger(__name__)

Outcome = Literal["logged", "enriched", "unchanged", "unmatched", "ignored"]
NoteOutcome = Literal["logged", "enriched", "unchanged"]

TOO_MANY_PARTICIPANTS: Final = "0101400"
NEGATIVE_TTL: Final = 30.0  # a person may be added to the CRM any moment
PHONE_CACHE_SIZE: Final = 10_000
#: how long a call's record is kept after its last event (a summary may come late)
CALL_RETENTION: Final = 30 * 86400.0
#: `daemon.inbox_retention_days`'s default, in seconds: how long an event may be replayed
INBOX_RETENTION: Final = 30 * 86400.0
PRUNE_EVERY: Final = 3600.0


class _KeyedLocks:
    """One lock per Quo object id, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _combine(outcomes: list[NoteOutcome]) -> Outcome:
    if "logged" in outcomes:
        return "logged"
    return "enriched" if "enriched" in outcomes else "unchanged"


def _backdate(created_at: str | None) -> str | None:
    """The activity's time for the note, unless unparseable or ahead of our clock."""
    if not created_at:
        return None
    try:
        moment = datetime.fromisoformat(created_at)
    except ValueError:
        return None
    if moment.tzinfo is None or moment > datetime.now(UTC):
        return None  # CRMs refuse notes dated in the future
    return created_at


def _first(parts: Sequence[CallPart | None], field: str) -> Any:
    """The field's value in the first part (in the given precedence) that has one."""
    for part in parts:
        value = None if part is None else getattr(part, field)
        if value is not None:
            return value
    return None


def _others(parts: Sequence[CallPart], own: frozenset[str]) -> list[str]:
    """The call's other side, as the first part that names anyone but us says."""
    for part in parts:
        others = [n for n in dict.fromkeys(part.external) if n and n not in own]
        if others:
            return others
    return []


def _user_name(user: User) -> str | None:
    name = f"{user.first_name or ''} {user.last_name or ''}".strip()
    return name or user.email


class ActivityLogger:
    """Turns one tenant's Quo message and call events into CRM notes."""

    def __init__(
        self,
        tenant: str,
        *,
        quo: QuoClient,
        adapter: CrmAdapter,
        store: Store,
        crm_object: str = "people",
        cache_ttl: float = 300.0,
        call_retention: float = CALL_RETENTION,
        inbox_retention: float = INBOX_RETENTION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`call_retention`: how long a call's record outlives its last event;
        `inbox_retention`: how long the inbox keeps an event for replay. A logged
        activity's row is kept for the longer of the two after its last change, so no
        replay and no late call event finds it gone and writes a second note."""
        self.tenant = tenant
        self._quo = quo
        self._adapter = adapter
        self._store = store
        self._crm_object = crm_object
        self._ttl = cache_ttl
        self._call_retention = call_retention
        self._activity_retention = max(call_retention, inbox_retention)
        self._clock = clock
        self._own: frozenset[str] = frozenset()
        self._own_expires = float("-inf")
        self._names: dict[str, str] = {}
        self._names_expires = float("-inf")
        self._next_prune = float("-inf")
        self._people: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()
        self._locks = _KeyedLocks()

    # -- entry point ------------------------------------------------------------------

    async def handle(self, event_type: str, body: bytes) -> Outcome:
        """Log one Quo event; raises on CRM/Quo failures (retry the event later)."""
        try:
            envelope = decode(body)
        except EnvelopeError as exc:
            log.warning("ignoring malformed Quo event: %s", exc)
            return "ignored"
        kind = event_type if event_type in KNOWN_EVENTS else envelope.type
        if kind not in KNOWN_EVENTS:
            return "ignored"
        try:
            event = parse_event(kind, envelope)
        except msgspec.ValidationError as exc:
            log.warning("ignoring %s event: %s", kind, exc)
            return "ignored"
        await self._prune()
        if isinstance(event, MessageEvent):
            async with self._locks.hold(event.id):
                return await self._log_message(event)
        async with self._locks.hold(event.call_id):
            return await self._log_call(event)

    # -- messages ---------------------------------------------------------------------

    async def _log_message(self, message: MessageEvent) -> Outcome:
        own = await self._own_numbers()
        incoming = message.direction == "incoming"
        sides = message.senders if incoming else message.recipients
        other = next((n for n in sides if n and n not in own), None)
        if other is None:
            log.info("message %s has no external party: ignored", message.id)
            return "ignored"
        note = render_message(MessageFacts(
            id=message.id,
            direction=message.direction,
            other_party=other,
            text=message.text,
            created_at=message.created_at,
            deep_link=message.link,
            media_urls=message.media_urls,
        ))
        return await self._log_note("message", message.id, other, note)

    # -- calls ------------------------------------------------------------------------

    async def _record(self, event: CallEvent) -> CallRecord:
        """The call's stored record with this event merged in (saved if it changed)."""
        raw = await self._store.quo_calls.get(self.tenant, event.call_id)
        record = decode_record(raw).merge(event.slot, event.part)
        encoded = encode_record(record)
        if encoded != raw:
            await self._store.quo_calls.put(self.tenant, event.call_id, encoded)
        return record

    async def _prune(self) -> None:
        """Once every `PRUNE_EVERY`: forget settled calls' records and old activities."""
        if self._clock() < self._next_prune:
            return
        self._next_prune = self._clock() + PRUNE_EVERY
        now = self._store.now()
        while await self._store.quo_calls.prune(self.tenant, now - self._call_retention) > 0:
            pass
        before = now - self._activity_retention
        while await self._store.activities.prune(self.tenant, before) > 0:
            pass

    async def _fetch_call(self, call_id: str) -> Call | None:
        """The call from Quo; None when unknown (404) or a group call Quo will not show."""
        try:
            return await self._quo.get_call(call_id, lane=Lane.LIVE)
        except QuoNotFoundError:
            log.info("call %s not known to Quo yet: its own event will log it", call_id)
            return None
        except QuoValidationError as exc:
            if exc.code != TOO_MANY_PARTICIPANTS and "Too Many Participants" not in str(exc):
                raise
            log.info("call %s has more than two participants: ignored", call_id)
            return None

    async def _log_call(self, event: CallEvent) -> Outcome:
        call_id = event.call_id
        record = await self._record(event)
        own = await self._own_numbers()
        parts = record.parts()
        api: CallPart | None = None
        if not record.has_base or not _others(parts, own):
            # None of the call's own events yet (or none named the other side): Quo's
            # API stands in for them until one arrives.
            call = await self._fetch_call(call_id)
            if call is None:
                return "ignored"
            api = api_part(call)
            parts = [*parts, api]
        others = _others(parts, own)
        if len(others) > 1:
            log.info("call %s has %d external participants: ignored", call_id, len(others))
            return "ignored"
        if not others:
            log.info("call %s has no external participant", call_id)
            metrics.activities_logged.labels(self.tenant, "unmatched").inc()
            return "unmatched"
        logged = await self._store.activities.for_quo_object(self.tenant, call_id)
        summary, transcript = await self._ai_output(call_id, record, logged)
        facts = self._facts(call_id, others[0], record, api)
        names = await self._names_of(facts.answered_by, transcript)
        if facts.answered_by:
            facts = msgspec.structs.replace(
                facts, answered_by=names.get(facts.answered_by) or facts.answered_by
            )
        note = render_call(facts, summary, transcript, names)
        return await self._log_note(
            "call", call_id, others[0], note, logged=logged,
            summary=has_summary(summary), transcript=has_transcript(transcript),
        )

    @staticmethod
    def _facts(call_id: str, other: str, record: CallRecord, api: CallPart | None) -> CallFacts:
        """The note's facts, each read from the slots in a fixed precedence."""
        completed, missed, recording = record.completed, record.missed, record.recording
        voicemail = record.voicemail
        status = _first([completed, api], "status")
        if status is None and _first([completed, recording, api], "answered_at"):
            status = "answered"
        return CallFacts(
            id=call_id,
            direction=_first([completed, missed, recording, voicemail, api], "direction")
            or "unknown",
            other_party=other,
            status=status,
            duration=_first([completed, recording, api], "duration"),
            answered_by=_first([completed, record.summary, api], "answered_by"),
            created_at=_first([completed, missed, recording, api], "created_at"),
            deep_link=_first(record.parts(), "link"),
            missed=missed is not None,
            voicemail=None if voicemail is None else VoicemailFacts(
                duration=voicemail.duration, transcript=voicemail.voicemail_transcript
            ),
            has_voicemail=any(p.has_voicemail for p in record.parts()),
            recordings=(recording.recordings or 0) if recording else 0,
            recording_seconds=recording.recording_seconds if recording else None,
        )

    async def _ai_output(
        self, call_id: str, record: CallRecord, logged: list[Activity]
    ) -> tuple[CallSummary | None, CallTranscript | None]:
        """Summary and transcript from the record; from Quo's API only when a note
        written before the record existed showed them (so rewriting cannot drop them),
        and then kept in the record."""
        summary = record.summary.summary if record.summary else None
        transcript = record.transcript.transcript if record.transcript else None
        fetched = record
        if not has_summary(summary) and any(a.has_summary for a in logged):
            with contextlib.suppress(QuoNotFoundError):
                summary = await self._quo.get_call_summary(call_id, lane=Lane.LIVE)
                fetched = fetched.merge("summary", CallPart(system=LEGACY, summary=summary))
        if not has_transcript(transcript) and any(a.has_transcript for a in logged):
            with contextlib.suppress(QuoNotFoundError):
                transcript = await self._quo.get_call_transcript(call_id, lane=Lane.LIVE)
                fetched = fetched.merge(
                    "transcript", CallPart(system=LEGACY, transcript=transcript)
                )
        if fetched is not record:
            await self._store.quo_calls.put(self.tenant, call_id, encode_record(fetched))
        return summary, transcript

    # -- notes, exactly once ----------------------------------------------------------

    async def _log_note(
        self,
        kind: ActivityKind,
        quo_id: str,
        phone: str,
        note: Note,
        *,
        logged: list[Activity] | None = None,
        summary: bool = False,
        transcript: bool = False,
    ) -> Outcome:
        # People logged before stay (a phone may have changed since); new matches join.
        if logged is None:
            logged = await self._store.activities.for_quo_object(self.tenant, quo_id)
        before = [a.crm_person_id for a in logged]
        people = list(dict.fromkeys([*before, *await self._find_people(phone)]))
        if not people:
            metrics.activities_logged.labels(self.tenant, "unmatched").inc()
            return "unmatched"
        outcomes = [
            await self._write_once(kind, quo_id, person, note, summary, transcript)
            for person in people
        ]
        return _combine(outcomes)

    async def _write_once(
        self,
        kind: ActivityKind,
        quo_id: str,
        person: str,
        note: Note,
        summary: bool,
        transcript: bool,
    ) -> NoteOutcome:
        activities = self._store.activities
        row = await activities.get(self.tenant, quo_id, person)
        current = row.crm_note_id if row is not None else None
        if kind == "message" and current is not None and row is not None \
                and row.pending_hash is None:
            return "unchanged"  # a message's note is never rewritten (module docstring)
        if row is not None and row.pending_hash is not None:
            adopted, current = await self._recover(row, note, summary, transcript)
            if adopted is not None:
                return adopted
        if row is not None and current is not None and row.content_hash == note.content_hash:
            if row.pending_hash is not None:  # an interrupted write of other content
                await activities.finish_write(
                    self.tenant, quo_id, person, crm_note_id=current,
                    content_hash=row.content_hash, has_summary=row.has_summary,
                    has_transcript=row.has_transcript,
                )
            return "unchanged"
        await activities.set_pending(self.tenant, quo_id, person, kind, note.content_hash)
        note_id = await self._adapter.write_note(NoteInput(
            crm_object=self._crm_object,
            person_id=person,
            title=note.title,
            markdown=note.markdown,
            created_at=_backdate(note.created_at),
        ))
        metrics.activities_logged.labels(self.tenant, kind).inc()
        if current is not None and current != note_id:
            await self._adapter.delete_note(current)
        await activities.finish_write(
            self.tenant, quo_id, person, crm_note_id=note_id, content_hash=note.content_hash,
            has_summary=summary, has_transcript=transcript,
        )
        return "enriched" if current is not None else "logged"

    async def _recover(
        self, row: Activity, note: Note, summary: bool, transcript: bool
    ) -> tuple[NoteOutcome | None, str | None]:
        """After an interrupted write: adopt the note it wrote, or clean up after it.

        Returns the outcome when a note was adopted, and the id of the row's note if
        it still exists in the CRM.
        """
        found = await self._adapter.find_note_ids(
            self._crm_object, row.crm_person_id, marker(row.quo_object_id)
        )
        old = row.crm_note_id
        written = [n for n in found if n != old]
        current = old if old in found else None
        if row.pending_hash == note.content_hash and written:
            keep = written[-1]
            for extra in [*written[:-1], *([current] if current else [])]:
                await self._adapter.delete_note(extra)
            await self._store.activities.finish_write(
                self.tenant, row.quo_object_id, row.crm_person_id, crm_note_id=keep,
                content_hash=note.content_hash, has_summary=summary, has_transcript=transcript,
            )
            log.info("adopted note %s written before an interruption", keep)
            return ("enriched" if old else "logged"), keep
        for stale in written:  # content we no longer want (the state moved on)
            await self._adapter.delete_note(stale)
        return None, current

    # -- lookups (cached) -------------------------------------------------------------

    async def _names_of(
        self, answered_by: str | None, transcript: CallTranscript | None
    ) -> Mapping[str, str]:
        """Quo user id -> name for the users the note shows (empty when none is shown,
        or when Quo does not know a user: the note shows the id then)."""
        dialogue = transcript.dialogue or [] if transcript is not None else []
        if not answered_by and not any(said.user_id for said in dialogue):
            return {}
        if self._clock() >= self._names_expires:
            users = await self._quo.list_users(lane=Lane.LIVE)
            self._names = {
                str(u.id): name for u in users if (name := _user_name(u)) is not None
            }
            self._names_expires = self._clock() + self._ttl
        return self._names

    async def _own_numbers(self) -> frozenset[str]:
        """The workspace's own lines: never a CRM person's number."""
        if self._clock() >= self._own_expires:
            numbers = await self._quo.list_phone_numbers(lane=Lane.LIVE)
            self._own = frozenset(n.number for n in numbers if n.number)
            self._own_expires = self._clock() + self._ttl
        return self._own

    async def _find_people(self, phone: str) -> list[str]:
        now = self._clock()
        cached = self._people.get(phone)
        if cached is not None and cached[0] > now:
            return cached[1]
        people = await self._adapter.find_people_by_phone(phone)
        ttl = self._ttl if people else min(self._ttl, NEGATIVE_TTL)
        self._people[phone] = (now + ttl, people)
        self._people.move_to_end(phone)
        while len(self._people) > PHONE_CACHE_SIZE:
            self._people.popitem(last=False)
        return people
