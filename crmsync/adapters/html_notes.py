"""A note's markdown as HTML, for CRMs whose notes are HTML (Pipedrive, HubSpot).

Notes use a small subset of markdown (`crmsync.domain.notes`): paragraphs, `**bold**`,
`- ` list items and `[text](url)` links. Everything else is text, escaped, so a message
body can never inject markup into the CRM. The marker line (`quo:<id>`) stays a plain
paragraph: `find_note_ids` searches the stored HTML for it, and escaping leaves
`quo:` and the id's characters (letters, digits, `_`, `-`) alone.
"""

from __future__ import annotations

import html
import re

_LINK = re.compile(r"\[([^\]\n]*)\]\((https?://[^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(text: str) -> str:
    """Escape `text`, then turn its links and bold spans into tags."""
    out: list[str] = []
    position = 0
    for link in _LINK.finditer(text):
        out.append(_bold(html.escape(text[position:link.start()], quote=False)))
        label = _bold(html.escape(link.group(1), quote=False))
        out.append(f'<a href="{html.escape(link.group(2))}">{label}</a>')
        position = link.end()
    out.append(_bold(html.escape(text[position:], quote=False)))
    return "".join(out)


def _bold(escaped: str) -> str:
    return _BOLD.sub(r"<b>\1</b>", escaped)


def markdown_to_html(markdown: str) -> str:
    """Blank-line separated blocks become paragraphs; runs of `- ` lines become lists."""
    parts: list[str] = []
    paragraph: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if paragraph:
            parts.append("<p>" + "<br>".join(_inline(line) for line in paragraph) + "</p>")
            paragraph.clear()
        if items:
            parts.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    for line in markdown.splitlines():
        stripped = line.strip()
        if stripped.startswith("- "):
            if paragraph:
                flush()
            items.append(stripped[2:])
        elif not stripped:
            flush()
        else:
            if items:
                flush()
            paragraph.append(stripped)
    flush()
    return "".join(parts)


def note_html(title: str, markdown: str) -> str:
    """The whole note: its title in bold, then the body."""
    return f"<p><b>{_inline(title)}</b></p>{markdown_to_html(markdown)}"
