"""The CRM note of a Quo message or call: markdown, title and content hash (pure functions).

A note ends with a marker line `quo:<AC id>` so that, after a crash between "about to
write" and "note id saved", the logger can find the note in the CRM again. The hash
covers everything sent (title, body, backdated time): equal hash, nothing to rewrite.

Rendering must depend only on data that every source of the same call gives alike
(the webhook's call object and `GET /v1/calls/{id}`), or the note of one call would
flip between versions depending on which event arrived last.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Final

import msgspec

from crmsync.quo.models import CallSummary, CallTranscript

MAX_TRANSCRIPT_CHARS: Final = 8000
DIRECTIONS: Final = {"incoming": "inbound", "outgoing": "outbound"}
NOT_ANSWERED: Final = frozenset(
    {"missed", "no-answer", "busy", "canceled", "failed", "abandoned", "forwarded"}
)


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


class CallFacts(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    direction: str  # incoming | outgoing
    other_party: str
    status: str | None = None
    duration: int | None = None  # seconds
    answered_by: str | None = None  # a Quo user id
    created_at: str | None = None
    deep_link: str | None = None
    recording_urls: tuple[str, ...] = ()
    voicemail_url: str | None = None


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
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def has_summary(summary: CallSummary | None) -> bool:
    return summary is not None and bool(summary.summary or summary.next_steps)


def has_transcript(transcript: CallTranscript | None) -> bool:
    return transcript is not None and bool(transcript.dialogue)


def _direction(direction: str) -> str:
    return DIRECTIONS.get(direction, direction or "unknown")


def render_message(message: MessageFacts) -> Note:
    incoming = message.direction == "incoming"
    title = f"SMS {'from' if incoming else 'to'} {message.other_party}"
    lines = [
        f"**{_direction(message.direction).capitalize()} SMS** "
        f"{'from' if incoming else 'to'} {message.other_party}",
        "",
        message.text.strip() or "_(no text)_",
        "",
    ]
    when = format_time(message.created_at)
    if when:
        lines.append(f"- Time: {when}")
    lines.extend(f"- [Attachment {i}]({url})" for i, url in enumerate(message.media_urls, 1))
    if message.deep_link:
        lines.append(f"- [Open in Quo]({message.deep_link})")
    return _note(title, lines, message.id, message.created_at)


def _call_title(call: CallFacts) -> str:
    status = call.status or ""
    if status in NOT_ANSWERED and not call.duration:
        return f"Call ({_direction(call.direction)}, {status.replace('-', ' ')})"
    return f"Call ({_direction(call.direction)}, {format_duration(call.duration)})"


def transcript_excerpt(transcript: CallTranscript, limit: int = MAX_TRANSCRIPT_CHARS) -> str:
    """The dialogue as `**speaker**: text` lines, cut to at most `limit` characters."""
    lines = []
    for said in transcript.dialogue or []:
        speaker = said.identifier or ("Quo user" if said.user_id else "Unknown")
        lines.append(f"**{speaker}**: {(said.content or '').strip()}")
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


def render_call(
    call: CallFacts,
    summary: CallSummary | None = None,
    transcript: CallTranscript | None = None,
) -> Note:
    lines = [
        f"**{_direction(call.direction).capitalize()} call** with {call.other_party}",
        "",
        f"- Duration: {format_duration(call.duration)}",
        f"- Status: {call.status or 'unknown'}",
    ]
    if call.answered_by:
        lines.append(f"- Answered by: {call.answered_by}")
    elif call.direction == "incoming":
        lines.append("- Not answered")
    when = format_time(call.created_at)
    if when:
        lines.append(f"- Time: {when}")
    lines.extend(
        f"- [Recording{f' {i}' if len(call.recording_urls) > 1 else ''}]({url})"
        for i, url in enumerate(call.recording_urls, 1)
    )
    if call.voicemail_url:
        lines.append(f"- [Voicemail]({call.voicemail_url})")
    if call.deep_link:
        lines.append(f"- [Open in Quo]({call.deep_link})")
    if summary is not None and has_summary(summary):
        if summary.summary:
            lines += ["", "**Summary**", *(f"- {point}" for point in summary.summary)]
        if summary.next_steps:
            lines += ["", "**Next steps**", *(f"- {step}" for step in summary.next_steps)]
    if transcript is not None and has_transcript(transcript):
        lines += ["", "**Transcript**", transcript_excerpt(transcript)]
    return _note(_call_title(call), lines, call.id, call.created_at)
