"""Rendering of CRM notes for Quo messages and calls (pure functions, no I/O)."""

from __future__ import annotations

import re

import pytest

from crmsync.domain.notes import (
    MAX_TRANSCRIPT_CHARS,
    MAX_VOICEMAIL_CHARS,
    CallFacts,
    MessageFacts,
    VoicemailFacts,
    canonical_time,
    format_duration,
    format_time,
    marker,
    render_call,
    render_message,
    status_label,
    transcript_excerpt,
)
from crmsync.quo.models import CallSummary, CallTranscript, DialogueLine

THEM = "+15550001111"


def message(**changes: object) -> MessageFacts:
    base: dict[str, object] = {
        "id": "AC1", "direction": "incoming", "other_party": THEM, "text": "Hi there",
        "created_at": "2025-01-02T15:04:05.000Z",
    }
    return MessageFacts(**{**base, **changes})  # type: ignore[arg-type]


def call(**changes: object) -> CallFacts:
    base: dict[str, object] = {
        "id": "AC9", "direction": "incoming", "other_party": THEM, "status": "completed",
        "duration": 125, "answered_by": "US1", "created_at": "2025-01-02T15:04:05.000Z",
    }
    return CallFacts(**{**base, **changes})  # type: ignore[arg-type]


def transcript(lines: int, words: int = 5) -> CallTranscript:
    dialogue = [
        DialogueLine(
            content=" ".join(f"word{i}" for i in range(words)),
            identifier=THEM if n % 2 == 0 else None,
            user_id=None if n % 2 == 0 else "US1",
        )
        for n in range(lines)
    ]
    return CallTranscript(call_id="AC9", dialogue=dialogue)


SUMMARY = CallSummary(
    call_id="AC9", status="completed", summary=["Wants a quote", "Budget 5k"],
    next_steps=["Send the quote"],
)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(None, "0:00"), (0, "0:00"), (5, "0:05"), (65, "1:05"), (125, "2:05"), (600, "10:00"),
     (3599, "59:59"), (3600, "1:00:00"), (3725, "1:02:05"), (-3, "0:00")],
)
def test_duration_formatting(seconds: int | None, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_time_formatting() -> None:
    assert format_time("2025-01-02T15:04:05.000Z") == "2025-01-02 15:04 UTC"
    assert format_time("2025-01-02T17:04:05+02:00") == "2025-01-02 15:04 UTC"
    assert format_time("yesterday") == "yesterday"
    assert format_time(None) is None


def test_one_instant_has_one_spelling() -> None:
    spellings = ["2025-01-02T15:04:05.000Z", "2025-01-02T15:04:05Z",
                 "2025-01-02T17:04:05+02:00", "2025-01-02T15:04:05.000+00:00"]
    assert {canonical_time(s) for s in spellings} == {"2025-01-02T15:04:05.000Z"}
    assert canonical_time("soon") == "soon"
    assert canonical_time(None) is None
    notes = {render_call(call(created_at=s)).content_hash for s in spellings}
    assert len(notes) == 1  # the webhook's and the API's spelling give one note


@pytest.mark.parametrize(
    ("status", "label"),
    [("answered", "answered"), ("unanswered", "not answered"), ("ai-handled",
     "handled by Quo's AI agent"), ("abandoned", "abandoned (the caller hung up)"),
     ("unknown", "unknown"), ("completed", "completed"), ("no-answer", "no answer"),
     ("in-progress", "in progress"), ("busy", "busy"), (None, "unknown")],
)
def test_status_labels_cover_both_enums(status: str | None, label: str) -> None:
    assert status_label(status) == label


def test_incoming_message() -> None:
    note = render_message(message(deep_link="https://my.quo.com/inbox/PN1/c/CN1?at=AC1"))
    assert note.title == f"SMS from {THEM} · 2025-01-02 15:04 UTC"
    assert f"**Inbound SMS** from {THEM}" in note.markdown
    assert "Hi there" in note.markdown
    assert "2025-01-02 15:04 UTC" in note.markdown
    assert "[Open in Quo](https://my.quo.com/inbox/PN1/c/CN1?at=AC1)" in note.markdown
    assert note.markdown.splitlines()[-1] == marker("AC1") == "quo:AC1"
    assert note.created_at == "2025-01-02T15:04:05.000Z"


def test_outgoing_message_and_empty_text() -> None:
    note = render_message(message(direction="outgoing", text="  ", media_urls=("https://m/1",)))
    assert note.title == f"SMS to {THEM} · 2025-01-02 15:04 UTC"
    assert f"**Outbound SMS** to {THEM}" in note.markdown
    assert "_(no text)_" in note.markdown
    assert "[Attachment 1](https://m/1)" in note.markdown


def test_call_basics() -> None:
    link = "https://my.quo.com/inbox/PN1/c/CN1?at=AC9"
    note = render_call(call(recordings=1, recording_seconds=125, deep_link=link))
    assert note.title == f"Inbound call from {THEM} · 2025-01-02 15:04 UTC · 2:05"
    assert f"**Inbound call** from {THEM}" in note.markdown
    assert "- Time: 2025-01-02 15:04 UTC" in note.markdown
    assert "- Duration: 2:05" in note.markdown
    assert "- Status: completed" in note.markdown
    assert "- Answered by: US1" in note.markdown
    assert "- Recording: 2:05, to play in Quo" in note.markdown
    assert f"- [Open in Quo]({link})" in note.markdown
    assert "http" not in note.markdown.replace(link, "")  # no audio URL, ever
    assert "**Summary**" not in note.markdown and "**Transcript**" not in note.markdown
    assert note.markdown.splitlines()[-1] == "quo:AC9"
    assert note.created_at == "2025-01-02T15:04:05.000Z"


def test_missed_and_outgoing_call_titles() -> None:
    missed = render_call(call(status="no-answer", duration=0, answered_by=None))
    assert missed.title == f"Missed call from {THEM} · 2025-01-02 15:04 UTC"
    assert f"**Missed call** from {THEM}" in missed.markdown
    assert "- Status: no answer" in missed.markdown
    assert "- Duration" not in missed.markdown
    event_only = render_call(call(status=None, duration=None, answered_by=None, missed=True))
    assert event_only.title == missed.title
    assert "- Status: missed" in event_only.markdown
    outgoing = render_call(call(direction="outgoing", duration=61))
    assert outgoing.title == f"Outbound call to {THEM} · 2025-01-02 15:04 UTC · 1:01"
    unanswered = render_call(call(direction="outgoing", status="unanswered", duration=0))
    assert unanswered.title == f"Outbound call to {THEM} · 2025-01-02 15:04 UTC · not answered"
    unknown = render_call(call(direction="", created_at=None))
    assert unknown.title == f"Call with {THEM} · 2:05"


def test_missed_call_with_voicemail() -> None:
    voicemail = VoicemailFacts(duration=32, transcript="  Hi, it's Alice. Call me back.  ")
    note = render_call(call(status="unanswered", duration=0, answered_by=None, missed=True,
                            voicemail=voicemail, has_voicemail=True))
    assert note.title == f"Missed call from {THEM} · 2025-01-02 15:04 UTC · voicemail"
    body = note.markdown
    assert "- Voicemail: 0:32" in body
    assert "**Voicemail**\nHi, it's Alice. Call me back.\n" in body
    announced = render_call(call(status="unanswered", duration=0, has_voicemail=True))
    assert "- Voicemail: left" in announced.markdown
    assert "**Voicemail**" not in announced.markdown
    long = render_call(call(voicemail=VoicemailFacts(duration=600, transcript="y" * 10_000)))
    assert "y" * MAX_VOICEMAIL_CHARS not in long.markdown
    assert "y" * (MAX_VOICEMAIL_CHARS - 1) + "…" in long.markdown.splitlines()


def test_summary_and_transcript_sections() -> None:
    note = render_call(call(), SUMMARY, transcript(3))
    body = note.markdown
    assert body.index("**Summary**") < body.index("**Next steps**") < body.index("**Transcript**")
    assert "- Wants a quote\n- Budget 5k" in body
    assert "- Send the quote" in body
    assert f"**{THEM}**: word0" in body
    assert "**US1**: word0" in body  # the user's id when its name is not known
    assert body.splitlines()[-1] == "quo:AC9"
    named = render_call(call(), SUMMARY, transcript(3), {"US1": "Olivia Owner"})
    assert "**Olivia Owner**: word0" in named.markdown


def test_empty_summary_and_transcript_render_nothing() -> None:
    bare = render_call(call())
    empty = render_call(
        call(),
        CallSummary(call_id="AC9", status="in-progress", summary=None, next_steps=None),
        CallTranscript(call_id="AC9", status="in-progress", dialogue=None),
    )
    assert empty == bare


def test_hash_changes_with_each_part_and_is_stable() -> None:
    bare = render_call(call())
    summarised = render_call(call(), SUMMARY)
    full = render_call(call(), SUMMARY, transcript(2))
    assert len({bare.content_hash, summarised.content_hash, full.content_hash}) == 3
    assert render_call(call(), SUMMARY, transcript(2)).content_hash == full.content_hash
    assert render_call(call(status="in-progress")).content_hash != bare.content_hash
    assert render_message(message()).content_hash != render_message(message(text="x")).content_hash


def test_transcript_is_bounded() -> None:
    long = transcript(2000, words=20)
    excerpt = transcript_excerpt(long)
    assert len(excerpt) <= MAX_TRANSCRIPT_CHARS
    shown = excerpt.splitlines()
    match = re.fullmatch(r"_… transcript shortened, (\d+) more line\(s\) in Quo_", shown[-1])
    assert match is not None
    assert int(match.group(1)) + len(shown) - 1 == 2000
    note = render_call(call(), None, long)
    assert len(note.markdown) < MAX_TRANSCRIPT_CHARS + 1000
    assert note.markdown.splitlines()[-1] == "quo:AC9"


def test_one_huge_transcript_line_is_cut() -> None:
    huge = CallTranscript(call_id="AC9", dialogue=[DialogueLine(content="x" * 50_000)])
    excerpt = transcript_excerpt(huge, limit=1000)
    assert len(excerpt) <= 1000
    assert excerpt.startswith("**Unknown**: xxx")
    assert excerpt.endswith("_… transcript shortened, 0 more line(s) in Quo_")


def test_short_transcript_is_whole() -> None:
    excerpt = transcript_excerpt(transcript(4))
    assert len(excerpt.splitlines()) == 4
    assert "shortened" not in excerpt
