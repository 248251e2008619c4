"""Rendering of CRM notes for Quo messages and calls (pure functions, no I/O)."""

from __future__ import annotations

import re

import pytest

from crmsync.domain.notes import (
    MAX_TRANSCRIPT_CHARS,
    CallFacts,
    MessageFacts,
    format_duration,
    format_time,
    marker,
    render_call,
    render_message,
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


def test_incoming_message() -> None:
    note = render_message(message(deep_link="https://my.quo.com/inbox/PN1/c/CN1?at=AC1"))
    assert note.title == f"SMS from {THEM}"
    assert f"**Inbound SMS** from {THEM}" in note.markdown
    assert "Hi there" in note.markdown
    assert "2025-01-02 15:04 UTC" in note.markdown
    assert "[Open in Quo](https://my.quo.com/inbox/PN1/c/CN1?at=AC1)" in note.markdown
    assert note.markdown.splitlines()[-1] == marker("AC1") == "quo:AC1"
    assert note.created_at == "2025-01-02T15:04:05.000Z"


def test_outgoing_message_and_empty_text() -> None:
    note = render_message(message(direction="outgoing", text="  ", media_urls=("https://m/1",)))
    assert note.title == f"SMS to {THEM}"
    assert f"**Outbound SMS** to {THEM}" in note.markdown
    assert "_(no text)_" in note.markdown
    assert "[Attachment 1](https://m/1)" in note.markdown


def test_call_basics() -> None:
    note = render_call(call(recording_urls=("https://r/1",), voicemail_url="https://v/1"))
    assert note.title == "Call (inbound, 2:05)"
    assert f"**Inbound call** with {THEM}" in note.markdown
    assert "- Duration: 2:05" in note.markdown
    assert "- Status: completed" in note.markdown
    assert "- Answered by: US1" in note.markdown
    assert "[Recording](https://r/1)" in note.markdown
    assert "[Voicemail](https://v/1)" in note.markdown
    assert "**Summary**" not in note.markdown and "**Transcript**" not in note.markdown
    assert note.markdown.splitlines()[-1] == "quo:AC9"


def test_missed_and_outgoing_call_titles() -> None:
    missed = render_call(call(status="no-answer", duration=0, answered_by=None))
    assert missed.title == "Call (inbound, no answer)"
    assert "- Not answered" in missed.markdown
    outgoing = render_call(call(direction="outgoing", duration=61))
    assert outgoing.title == "Call (outbound, 1:01)"


def test_summary_and_transcript_sections() -> None:
    note = render_call(call(), SUMMARY, transcript(3))
    body = note.markdown
    assert body.index("**Summary**") < body.index("**Next steps**") < body.index("**Transcript**")
    assert "- Wants a quote\n- Budget 5k" in body
    assert "- Send the quote" in body
    assert f"**{THEM}**: word0" in body
    assert "**Quo user**: word0" in body
    assert body.splitlines()[-1] == "quo:AC9"


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
