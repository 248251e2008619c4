"""Notes as HTML (Pipedrive, HubSpot): the markdown subset of `domain.notes`, escaped."""

from __future__ import annotations

from crmsync.adapters.html_notes import markdown_to_html, note_html


def test_paragraphs_bold_lists_and_links() -> None:
    markdown = ("**Inbound SMS** from +14155550100\n\nHi there\n"
                "- [Open in Quo](https://q.example/c?a=1&b=2)\n- 1:05\n\nquo:AC_12-x")

    assert markdown_to_html(markdown) == (
        "<p><b>Inbound SMS</b> from +14155550100</p><p>Hi there</p>"
        '<ul><li><a href="https://q.example/c?a=1&amp;b=2">Open in Quo</a></li>'
        "<li>1:05</li></ul><p>quo:AC_12-x</p>"
    )


def test_message_text_cannot_inject_markup() -> None:
    html = note_html("SMS <b>", "<script>alert(1)</script> & [x](javascript:alert(1))")

    assert "<script>" not in html and "javascript:" not in html.split("href=")[-1][:12]
    assert html == ("<p><b>SMS &lt;b&gt;</b></p><p>&lt;script&gt;alert(1)&lt;/script&gt; "
                    "&amp; [x](javascript:alert(1))</p>")


def test_the_marker_survives_as_plain_text() -> None:
    assert "quo:CA123_abc-9" in note_html("t", "text\n\nquo:CA123_abc-9")
