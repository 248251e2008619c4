"""Logging context: the tenant and the record being worked on, set once per task.

    with log_context.tenant("acme"):          # a tenant's runtime, a webhook request
        ...
    with log_context.trace("people/rec-1"):   # one record, from fetch to write
        log.info("created")                   # → {"tenant": "acme", "trace_id": ...}

Both live in `contextvars`: a task created inside the block inherits them (asyncio
copies the context at task creation), so an actor started by the tenant's runtime logs
with its tenant without passing it along. `ContextFilter`, installed on the daemon's log
handler, copies them onto every record it handles; an explicit `extra={"tenant": ...}`
on a call still wins.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

_tenant: ContextVar[str | None] = ContextVar("crmsync_tenant", default=None)
_trace: ContextVar[str | None] = ContextVar("crmsync_trace_id", default=None)


@contextlib.contextmanager
def tenant(tenant_id: str | None) -> Iterator[None]:
    """Log records made in this block (and in tasks it starts) name `tenant_id`."""
    token = _tenant.set(tenant_id)
    try:
        yield
    finally:
        _tenant.reset(token)


@contextlib.contextmanager
def trace(trace_id: str | None) -> Iterator[None]:
    """Log records made in this block follow one record (`object/record-id`)."""
    token = _trace.set(trace_id)
    try:
        yield
    finally:
        _trace.reset(token)


def current_tenant() -> str | None:
    return _tenant.get()


class ContextFilter(logging.Filter):
    """Stamps `tenant` and `trace_id` from the context onto each record (never drops)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "tenant", None) is None:
            record.tenant = _tenant.get()
        if getattr(record, "trace_id", None) is None:
            record.trace_id = _trace.get()
        return True
