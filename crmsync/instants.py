"""Reading the ISO 8601 times the APIs send: one parser for every wing.

Quo and the CRMs write UTC; a time without an offset is taken as UTC. Anything that
does not parse (or cannot be shifted to UTC) is None: the caller decides what an
unreadable time means for it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def parse_instant(value: object) -> datetime | None:
    """`value` as an aware UTC datetime; None if absent or not an ISO 8601 time."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):  # e.g. year 1 with a positive offset
        return None


def canonical_instant(value: object) -> str | None:
    """One spelling of an instant (`2026-04-13T12:00:00.000Z`), so two sources'
    spellings of it compare (and hash) equal; None if it is not a time."""
    moment = parse_instant(value)
    if moment is None:
        return None
    return moment.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
