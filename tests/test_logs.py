"""Log lines: one event per line, JSON or text, carrying the tenant and the trace id."""

from __future__ import annotations

import json
import logging

from crmsync.actors.messages import trace_id
from crmsync.daemon.logs import JsonFormatter, TextFormatter


def record(message: str, **extra: object) -> logging.LogRecord:
    entry = logging.LogRecord("crmsync.test", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(entry, key, value)
    return entry


def test_json_line_carries_tenant_and_trace_id() -> None:
    line = JsonFormatter().format(
        record("created as Quo contact x\\nwith a newline",
               tenant="acme", trace_id=trace_id("people", "rec-1"))
    )
    assert "\n" not in line
    event = json.loads(line)
    assert event["tenant"] == "acme"
    assert event["trace_id"] == "people/rec-1"
    assert event["level"] == "warning"
    assert event["time"].endswith("Z")


def test_text_line_names_the_tenant() -> None:
    line = TextFormatter().format(record("stopping", tenant="acme"))
    assert "[acme] stopping" in line
    assert "WARNING" in line
