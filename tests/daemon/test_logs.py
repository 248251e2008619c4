"""Log lines: one event per line, JSON or text, carrying the tenant and the trace id."""

from __future__ import annotations

import asyncio
import json
import logging

from crmsync import log_context
from crmsync.actors.messages import trace_id
from crmsync.daemon.logs import JsonFormatter, TextFormatter
from crmsync.log_context import ContextFilter


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


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(ContextFilter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(JsonFormatter().format(record)))


async def test_the_tenant_set_once_reaches_the_tasks_started_under_it() -> None:
    """1. a runtime sets its tenant once, then starts a task that traces one record
    2. a task outside the block logs too
    Result: only the lines made under the block carry the tenant (and the trace id
    where one was set); nothing leaks into the outside task or after the block."""
    handler = _Collect()
    logger = logging.getLogger("crmsync.test.context")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    async def actor() -> None:
        logger.info("before the record")
        with log_context.trace("people/rec-1"):
            logger.info("on the record")

    try:
        with log_context.tenant("acme"):
            await asyncio.create_task(actor())
        await asyncio.create_task(actor())
    finally:
        logger.removeHandler(handler)
    tagged = [(line.get("tenant"), line.get("trace_id")) for line in handler.lines]
    assert tagged == [
        ("acme", None), ("acme", "people/rec-1"), (None, None), (None, "people/rec-1"),
    ]
