"""The CRM note of a Quo message or call: markdown, title and content hash (pure functions).

A title line names the direction, the other party's number and the time; the body is
the markdown Attio accepts (bold, lists, links). A note ends with a marker line
`quo:<AC id>` so that, after a crash between "about to write" and "note id saved", the
logger can find the note in the CRM again. The hash covers everything sent (title,
body, backdated time): equal hash, nothing to rewrite.

Rendering must depend only on data that every arrival order of a call's events gives
alike, or the note of one call would flip between versions depending on which event
came last. The caller (`services/activity.py`) resolves that before it gets here: it
hands over one `CallFacts` chosen by a fixed precedence among what the events said.
Recording and voicemail audio URLs expire, so a note links the call in Quo instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final

import msgspec

from crmsync.instants import canonical_instant, parse_instant
from crmsync.quo.models import CallSummary, CallTranscript

MAX_TRANSCRIPT_CHARS: Final = 8000
MAX_VOICEMAIL_CHARS: Final = 4000
DIRECTIONS: Final = {"incoming": "inbound", "outgoing": "outbound"}
#: statuses of both of Quo's enums (v1 REST and the 2026-03-30 `call.completed`) for a
#: call nobody talked on
NOT_ANSWERED: Final = frozenset({
    "missed", "no-answer", "busy", "canceled", "failed", "abandoned", "forwarded",
    "unanswered",
})
STATUS_LABELS: Final = {
    # 2026-03-30 `call.completed`
    "answered": "answered",
    "unanswered": "not answered",
    "failed": "failed",
    "forwarded": "forwarded",
    "abandoned": "abandoned (the caller hung up)",
    "ai-handled": "handled by Quo's AI agent",
    "unknown": "unknown",
    # v1 REST and legacy webhooks (the rest read as they are, dashes as spaces)
    "completed": "completed",
    "no-answer": "no answer",
    "in-progress": "in progress",
}
SEP: Final = " · "


class Note(msgspec.Struct, frozen=True, kw_only=True):
    title: str
    markdown: str
    created_at: str | None  # the activity's own time, to backdate the note
    content_hash: str


class MessageFacts(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    direction: str  # incoming | outgoing
    other_party: str  # E.164 of the person's side
    text: str
    created_at: str | None = None
    deep_link: str | None = None
    media_urls: tuple[str, ...] = ()


class VoicemailFacts(msgspec.Struct, frozen=True, kw_only=True):
    duration: int | None = None  # seconds
    transcript: str | None = None


class CallFacts(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    direction: str  # incoming | outgoing
    other_party: str
    status: str | None = None  # either of Quo's enums
    duration: int | None = None  # seconds
    answered_by: str | None = None  # a Quo user's name, or its id
    created_at: str | None = None
    deep_link: str | None = None  # the call in Quo (`links.quo` or the legacy deepLink)
    missed: bool = False  # `call.missed` said so
    voicemail: VoicemailFacts | None = None  # `call.voicemail.completed`
    has_voicemail: bool = False  # `call.completed` said one was left
    recording_seconds: int | None = None  # `call.recording.completed`: total length
    recordings: int = 0  # how many recorded segments


def marker(quo_object_id: str) -> str:
    """The line that identifies a note as the one of this Quo call or message."""
    return f"quo:{quo_object_id}"


def content_hash(title: str, markdown: str, created_at: str | None) -> str:
    return hashlib.sha256(msgspec.json.encode([title, markdown, created_at])).hexdigest()


def _note(title: str, lines: list[str], quo_object_id: str, created_at: str | None) -> Note:
    markdown = "\n".join([*lines, "", marker(quo_object_id)])
    return Note(
        title=title,
        markdown=markdown,
        created_at=created_at,
        content_hash=content_hash(title, markdown, created_at),
    )


def format_duration(seconds: int | float | None) -> str:
    """`m:ss`, or `h:mm:ss` from one hour on."""
    total = max(int(seconds or 0), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_time(value: str | None) -> str | None:
    """`2025-01-01 15:00 UTC` from an ISO time (the raw text when it does not parse)."""
    if not value:
        return None
    moment = parse_instant(value)
    return value if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def canonical_time(value: str | None) -> str | None:
    """One spelling of an ISO time (`2025-01-02T15:04:05.000Z`), whatever the source.

    The webhook and `GET /v1/calls/{id}` may spell the same instant differently; the
    note's backdated time is hashed, so it must not depend on which one was read.
    """
    if not value:
        return None
    return canonical_instant(value) or value


def has_summary(summary: CallSummary | None) -> bool:
    return summary is not None and bool(summary.summary or summary.next_steps)


def has_transcript(transcript: CallTranscript | None) -> bool:
    return transcript is not None and bool(transcript.dialogue)


def status_label(status: str | None) -> str:
    if not status:
        return "unknown"
    return STATUS_LABELS.get(status, status.replace("-", " "))


def _direction(direction: str) -> str:
    return DIRECTIONS.get(direction, direction or "unknown")


def _title(*parts: str | None) -> str:
    return SEP.join(p for p in parts if p)


def render_message(message: MessageFacts) -> Note:
    incoming = message.direction == "incoming"
    side = "from" if incoming else "to"
    when = format_time(message.created_at)
    title = _title(f"SMS {side} {message.other_party}", when)
    lines = [
        f"**{_direction(message.direction).capitalize()} SMS** {side} {message.other_party}",
        "",
        message.text.strip() or "_(no text)_",
        "",
    ]
    if when:
        lines.append(f"- Time: {when}")
    lines.extend(f"- [Attachment {i}]({url})" for i, url in enumerate(message.media_urls, 1))
    if message.deep_link:
        lines.append(f"- [Open in Quo]({message.deep_link})")
    return _note(title, lines, message.id, message.created_at)


def is_missed(call: CallFacts) -> bool:
    """Nobody talked: `call.missed`, or a not-answered status with no talk time."""
    if call.missed:
        return True
    return (call.status or "") in NOT_ANSWERED and not call.duration


def _headline(call: CallFacts) -> tuple[str, str]:
    """("Missed call", "from") and the like."""
    incoming = call.direction != "outgoing"
    side = "from" if incoming else "to"
    if incoming and is_missed(call):
        return "Missed call", side
    if call.direction in DIRECTIONS:
        return f"{_direction(call.direction).capitalize()} call", side
    return "Call", "with"


def _call_title(call: CallFacts) -> str:
    kind, side = _headline(call)
    extra: str | None
    if call.voicemail is not None or call.has_voicemail:
        extra = "voicemail"
    elif is_missed(call):
        extra = None if call.direction != "outgoing" else status_label(call.status)
    else:
        extra = format_duration(call.duration)
    return _title(f"{kind} {side} {call.other_party}", format_time(call.created_at), extra)


def speaker(
    user_id: str | None, identifier: str | None, names: Mapping[str, str]
) -> str:
    """A Quo user by name (its id when the name is not known), else the phone number."""
    if user_id:
        return names.get(user_id) or user_id
    return identifier or "Unknown"


def transcript_excerpt(
    transcript: CallTranscript,
    limit: int = MAX_TRANSCRIPT_CHARS,
    names: Mapping[str, str] | None = None,
) -> str:
    """The dialogue as `**speaker**: text` lines, cut to at most `limit` characters."""
    names = names or {}
    lines = [
        f"**{speaker(said.user_id, said.identifier, names)}**: {(said.content or '').strip()}"
        for said in transcript.dialogue or []
    ]
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept: list[str] = []
    used = 0
    budget = limit - 60  # room for the "shortened" line
    for line in lines:
        if used + len(line) + 1 > budget:
            break
        kept.append(line)
        used += len(line) + 1
    if not kept:  # one huge first line: show its start
        kept.append(lines[0][: max(budget, 0)] + "…")
    omitted = len(lines) - len(kept)
    kept.append(f"_… transcript shortened, {omitted} more line(s) in Quo_")
    return "\n".join(kept)[:limit]


def _bounded(text: str, limit: int) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _facts_lines(call: CallFacts) -> list[str]:
    lines = []
    when = format_time(call.created_at)
    if when:
        lines.append(f"- Time: {when}")
    if not is_missed(call) or call.duration:
        lines.append(f"- Duration: {format_duration(call.duration)}")
    lines.append(f"- Status: {status_label(call.status or ('missed' if call.missed else None))}")
    if call.answered_by:
        lines.append(f"- Answered by: {call.answered_by}")
    if call.voicemail is not None:
        lines.append(f"- Voicemail: {format_duration(call.voicemail.duration)}")
    elif call.has_voicemail:
        lines.append("- Voicemail: left")
    if call.recordings:
        count = f", {call.recordings} parts" if call.recordings > 1 else ""
        lines.append(
            f"- Recording: {format_duration(call.recording_seconds)}{count}, to play in Quo"
        )
    if call.deep_link:
        lines.append(f"- [Open in Quo]({call.deep_link})")
    return lines


def render_call(
    call: CallFacts,
    summary: CallSummary | None = None,
    transcript: CallTranscript | None = None,
    names: Mapping[str, str] | None = None,
) -> Note:
    """The call's note; `names` maps Quo user ids to names for the transcript."""
    kind, side = _headline(call)
    lines = [f"**{kind}** {side} {call.other_party}", "", *_facts_lines(call)]
    if call.voicemail is not None and (call.voicemail.transcript or "").strip():
        lines += ["", "**Voicemail**", _bounded(call.voicemail.transcript or "",
                                                MAX_VOICEMAIL_CHARS)]
    if summary is not None and has_summary(summary):
        if summary.summary:
            lines += ["", "**Summary**", *(f"- {point}" for point in summary.summary)]
        if summary.next_steps:
            lines += ["", "**Next steps**", *(f"- {step}" for step in summary.next_steps)]
    if transcript is not None and has_transcript(transcript):
        lines += ["", "**Transcript**", transcript_excerpt(transcript, names=names)]
    created_at = canonical_time(call.created_at)
    return _note(_call_title(call), lines, call.id, created_at)
