"""Activity logger: Quo messages and calls become CRM notes, exactly once per person.

The webhook inbox processor calls `handle(event_type, body)` with each stored Quo
event; it returns an outcome label and raises on CRM or Quo failures so the event is
retried later. One note per (message or call, matched person), tracked in `activities`.

A call's note grows: `call.completed`, its summary and its transcript arrive in any
order. Every call-family event gathers what is known now (the event, earlier events
of this process, else Quo's API), renders the note and compares its hash with the
row's: equal → `unchanged`; no note yet → create (`logged`); different → create the
new note, delete the old one (`enriched`): Attio notes cannot be updated.

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
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Final, Literal

import msgspec

from crmsync import metrics
from crmsync.adapters.base import CrmAdapter, NoteInput
from crmsync.domain.notes import (
    CallFacts,
    MessageFacts,
    Note,
    has_summary,
    has_transcript,
    marker,
    render_call,
    render_message,
)
from crmsync.net.ratelimit import Lane
from crmsync.quo.client import QuoClient
from crmsync.quo.errors import QuoNotFoundError, QuoValidationError
from crmsync.quo.models import Call, CallSummary, CallTranscript
from crmsync.services.quo_events import (
    CALL_EVENTS,
    KNOWN_EVENTS,
    MESSAGE_EVENTS,
    SUMMARY_EVENTS,
    CallObject,
    Envelope,
    EventData,
    KnownCall,
    MessageObject,
)
from crmsync.store import Activity, ActivityKind, Store

log = logging.getLogger(__name__)

Outcome = Literal["logged", "enriched", "unchanged", "unmatched", "ignored"]
NoteOutcome = Literal["logged", "enriched", "unchanged"]

TOO_MANY_PARTICIPANTS: Final = "0101400"
NEGATIVE_TTL: Final = 30.0  # a person may be added to the CRM any moment
PHONE_CACHE_SIZE: Final = 10_000
KNOWN_CALLS: Final = 2_000


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


def _to_list(value: list[str] | str | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tenant = tenant
        self._quo = quo
        self._adapter = adapter
        self._store = store
        self._crm_object = crm_object
        self._ttl = cache_ttl
        self._clock = clock
        self._own: frozenset[str] = frozenset()
        self._own_expires = float("-inf")
        self._people: OrderedDict[str, tuple[float, list[str]]] = OrderedDict()
        self._calls: OrderedDict[str, KnownCall] = OrderedDict()
        self._locks = _KeyedLocks()

    # -- entry point ------------------------------------------------------------------

    async def handle(self, event_type: str, body: bytes) -> Outcome:
        """Log one Quo event; raises on CRM/Quo failures (retry the event later)."""
        try:
            envelope = msgspec.json.decode(body, type=Envelope)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("ignoring malformed Quo event: %s", exc)
            return "ignored"
        kind = event_type if event_type in KNOWN_EVENTS else envelope.type
        if kind not in KNOWN_EVENTS:
            return "ignored"
        try:
            target = self._parse(kind, envelope.data)
        except msgspec.ValidationError as exc:
            log.warning("ignoring %s event: %s", kind, exc)
            return "ignored"
        if isinstance(target, MessageObject):
            async with self._locks.hold(target.id):
                return await self._log_message(kind, target, envelope.data.deep_link)
        async with self._locks.hold(target):
            return await self._log_call(target)

    def _parse(self, kind: str, data: EventData) -> MessageObject | str:
        """The message, or the call id (keeping what a call-family event carries)."""
        if kind in MESSAGE_EVENTS:
            return msgspec.convert(data.object, MessageObject)
        call_id = data.object.get("id" if kind in CALL_EVENTS else "callId")
        if not isinstance(call_id, str) or not call_id:
            raise msgspec.ValidationError("the event names no call")
        self._remember(kind, call_id, data)
        return call_id

    # -- messages ---------------------------------------------------------------------

    async def _log_message(
        self, kind: str, message: MessageObject, deep_link: str | None
    ) -> Outcome:
        own = await self._own_numbers()
        direction = message.direction or (
            "incoming" if kind == "message.received" else "outgoing"
        )
        sides = [message.from_] if direction == "incoming" else _to_list(message.to)
        other = next((n for n in sides if n and n not in own), None)
        if other is None:
            log.info("message %s has no external party: ignored", message.id)
            return "ignored"
        note = render_message(MessageFacts(
            id=message.id,
            direction=direction,
            other_party=other,
            text=message.text or message.body or "",
            created_at=message.created_at,
            deep_link=deep_link,
            media_urls=tuple(m.url for m in message.media or [] if m.url),
        ))
        return await self._log_note("message", message.id, other, note)

    # -- calls ------------------------------------------------------------------------

    def _known(self, call_id: str) -> KnownCall:
        known = self._calls.get(call_id)
        if known is None:
            known = self._calls[call_id] = KnownCall()
        self._calls.move_to_end(call_id)
        while len(self._calls) > KNOWN_CALLS:
            self._calls.popitem(last=False)
        return known

    def _remember(self, kind: str, call_id: str, data: EventData) -> None:
        """Keep what the event carries (validated here: bad payloads are ignored)."""
        if kind in CALL_EVENTS:
            call = msgspec.convert(data.object, CallObject)
            known = self._known(call_id)
            known.call = call
            known.deep_link = data.deep_link or known.deep_link
            known.recording_urls = tuple(r.url for r in call.recordings or [] if r.url)
            if call.voicemail is not None:
                known.voicemail_url = call.voicemail.url or call.voicemail.recording_url
        elif kind in SUMMARY_EVENTS:
            summary = msgspec.convert(data.object, CallSummary)
            if has_summary(summary):
                self._known(call_id).summary = summary
        else:
            transcript = msgspec.convert(data.object, CallTranscript)
            if has_transcript(transcript):
                self._known(call_id).transcript = transcript

    async def _fetch_call(self, call_id: str) -> Call | None:
        """The call from Quo; None when unknown (404) or a group call Quo will not show."""
        try:
            return await self._quo.get_call(call_id, lane=Lane.LIVE)
        except QuoNotFoundError:
            log.info("call %s not known to Quo yet: its call.completed will log it",
                     call_id)
            return None
        except QuoValidationError as exc:
            if exc.code != TOO_MANY_PARTICIPANTS and "Too Many Participants" not in str(exc):
                raise
            log.info("call %s has more than two participants: ignored", call_id)
            return None

    async def _log_call(self, call_id: str) -> Outcome:
        own = await self._own_numbers()
        known = self._known(call_id)
        call = known.call
        if call is None or not [p for p in call.participants if p not in own]:
            call = await self._fetch_call(call_id)  # real payloads may have participants: []
            if call is None:
                return "ignored"
        external = [p for p in call.participants if p and p not in own]
        if len(external) > 1:
            log.info("call %s has %d external participants: ignored", call_id,
                     len(external))
            return "ignored"
        if not external:
            log.info("call %s has no external participant", call_id)
            metrics.activities_logged.labels(self.tenant, "unmatched").inc()
            return "unmatched"
        if known.summary is None:
            with contextlib.suppress(QuoNotFoundError):  # 404: no summary yet
                summary = await self._quo.get_call_summary(call_id, lane=Lane.LIVE)
                known.summary = summary if has_summary(summary) else None
        if known.transcript is None:
            with contextlib.suppress(QuoNotFoundError):
                transcript = await self._quo.get_call_transcript(call_id, lane=Lane.LIVE)
                known.transcript = transcript if has_transcript(transcript) else None
        note = render_call(
            CallFacts(
                id=call_id,
                direction=call.direction or "unknown",
                other_party=external[0],
                status=call.status,
                duration=call.duration,
                answered_by=call.answered_by,
                created_at=call.created_at,
                deep_link=known.deep_link,
                recording_urls=known.recording_urls,
                voicemail_url=known.voicemail_url,
            ),
            known.summary,
            known.transcript,
        )
        return await self._log_note(
            "call", call_id, external[0], note,
            summary=known.summary is not None, transcript=known.transcript is not None,
        )

    # -- notes, exactly once ----------------------------------------------------------

    async def _log_note(
        self,
        kind: ActivityKind,
        quo_id: str,
        phone: str,
        note: Note,
        *,
        summary: bool = False,
        transcript: bool = False,
    ) -> Outcome:
        # People logged before stay (a phone may have changed since); new matches join.
        logged = [a.crm_person_id for a in await self._store.activities.for_quo_object(
            self.tenant, quo_id
        )]
        people = list(dict.fromkeys([*logged, *await self._find_people(phone)]))
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
