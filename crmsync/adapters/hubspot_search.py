"""HubSpot contact listings through the search API, as resumable cursors (no I/O).

`POST /crm/v3/objects/contacts/search` sorts by one property and pages by offset
(`after`), and one query answers at most 10,000 results (`after` + `limit` past that
is a 400). Two sweeps use it: the full listing, newest first (`createdate`
descending), and the changes since an instant, oldest first (`lastmodifieddate`
ascending, from `lastmodifieddate GTE since`).

Every page starts a new window at the last value it saw (keyset paging): the next
query filters `createdate LTE <last>` (or `lastmodifieddate GTE <last>`) and skips, by
`after`, only the records at exactly that instant that were listed already. So the
offset never grows past the records sharing one instant and the 10,000 cap is never
reached; and a record that leaves the listing's earlier part (deleted during a full
listing, modified during a changes listing: it moves to the end) cannot shift the
offsets and make a record after it be skipped, as plain offset paging would.

More than 10,000 records at one instant (an import) cannot be paged by offset: that
instant is listed on its own (`createdate EQ t`) sorted by `hs_object_id`, keyset-paged
by id (`hs_object_id LT <last id>`), and the sweep then goes on strictly past it
(`createdate LT t`).

The cursor is JSON (`Cursor`), stored in the checkpoint table: a listing resumes from
it after a restart.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any, Final, Literal, NamedTuple

import msgspec

from crmsync.instants import parse_instant

#: the most results one search query reaches (`after` + `limit`)
SEARCH_CAP: Final = 10_000
#: the most results one search page holds
MAX_LIMIT: Final = 200
ID_PROPERTY: Final = "hs_object_id"
EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

SweepName = Literal["created", "modified"]


class Sweep(NamedTuple):
    prop: str
    descending: bool


SWEEPS: Final[dict[str, Sweep]] = {
    "created": Sweep("createdate", True),
    "modified": Sweep("lastmodifieddate", False),
}


class Cursor(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where a listing is.

    `bound` (epoch ms) limits the window on the sweep's property: at or before it when
    newest first, at or after it when oldest first (strictly, when `strict`: every
    record at the instant was listed). `after` skips that many records of the window.
    `tie`: the records at the instant `bound` are being listed by id, after `last_id`.
    """

    sweep: SweepName
    bound: int | None = None
    strict: bool = False
    after: int = 0
    tie: bool = False
    last_id: str | None = None


class Seen(NamedTuple):
    """One record of a page: its id and the sweep property's value (epoch ms)."""

    record_id: str
    at: int


class CursorError(ValueError):
    """A string that is not a cursor this adapter made (another adapter's checkpoint)."""


class AnswerError(ValueError):
    """A search page the listing cannot go on from (the adapter's `CrmDecodeError`)."""


def encode_cursor(cursor: Cursor) -> str:
    return msgspec.json.encode(cursor).decode()


def decode_cursor(text: str) -> Cursor:
    try:
        cursor = msgspec.json.decode(text, type=Cursor)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CursorError(f"not a HubSpot listing cursor: {text[:60]!r}") from exc
    if cursor.after < 0 or (cursor.tie and cursor.bound is None):
        raise CursorError(f"not a HubSpot listing cursor: {text[:60]!r}")
    return cursor


def full_listing() -> Cursor:
    return Cursor(sweep="created")


def changed_since(since: float) -> Cursor:
    """Records modified at or after `since` (epoch seconds; rounded down to the ms:
    starting early only repeats records)."""
    return Cursor(sweep="modified", bound=math.floor(since * 1000))


def epoch_ms(value: Any) -> int | None:
    """A HubSpot date-time property (ISO 8601, or epoch ms as digits) as epoch ms."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    moment = parse_instant(value)
    if moment is None:
        return None
    return (moment - EPOCH) // dt.timedelta(milliseconds=1)


def plan(cursor: Cursor, page_size: int) -> tuple[Cursor, int]:
    """The cursor to query with, and its limit: a window whose offset would pass the
    cap (more records at one instant than one query reaches) lists the instant by id."""
    limit = max(1, min(page_size, MAX_LIMIT))
    if not cursor.tie and cursor.after + limit > SEARCH_CAP:
        assert cursor.bound is not None  # an offset is only ever kept at a bound
        return Cursor(sweep=cursor.sweep, bound=cursor.bound, tie=True), limit
    return cursor, limit


def search_body(cursor: Cursor, limit: int, properties: list[str]) -> dict[str, Any]:
    """The search request for one page of `cursor` (as `plan` gave it)."""
    sweep = SWEEPS[cursor.sweep]
    filters: list[dict[str, Any]] = []
    if cursor.tie:
        assert cursor.bound is not None
        filters.append({"propertyName": sweep.prop, "operator": "EQ",
                        "value": str(cursor.bound)})
        if cursor.last_id is not None:
            filters.append({"propertyName": ID_PROPERTY,
                            "operator": "LT" if sweep.descending else "GT",
                            "value": cursor.last_id})
        sort = ID_PROPERTY
    else:
        if cursor.bound is not None:
            operator = ("LT" if sweep.descending else "GT") if cursor.strict else \
                ("LTE" if sweep.descending else "GTE")
            filters.append({"propertyName": sweep.prop, "operator": operator,
                            "value": str(cursor.bound)})
        sort = sweep.prop
    body: dict[str, Any] = {
        "sorts": [{"propertyName": sort,
                   "direction": "DESCENDING" if sweep.descending else "ASCENDING"}],
        "properties": properties,
        "limit": limit,
    }
    if filters:
        body["filterGroups"] = [{"filters": filters}]
    if cursor.after:
        body["after"] = str(cursor.after)
    return body


def advance(cursor: Cursor, seen: list[Seen], has_next: bool) -> Cursor | None:
    """The cursor after a page of `cursor` that listed `seen`; None: the listing ended.

    Only a page without `paging.next` ends a window (a short page does not); a tie
    window that ends goes on past its instant. Raises `AnswerError` for a page the
    listing cannot move on from (`paging.next` without results, or results that do
    not move the window on), which would otherwise repeat it forever.
    """
    if not has_next:
        if cursor.tie:
            return Cursor(sweep=cursor.sweep, bound=cursor.bound, strict=True)
        return None
    if not seen:
        raise AnswerError("a search page without results says more follow")
    sweep = SWEEPS[cursor.sweep]
    if cursor.tie:
        last_id = seen[-1].record_id
        if cursor.last_id is not None and not _id_beyond(last_id, cursor.last_id,
                                                         sweep.descending):
            raise AnswerError(f"search by id did not move past id {cursor.last_id}")
        return Cursor(sweep=cursor.sweep, bound=cursor.bound, tie=True, last_id=last_id)
    last = seen[-1].at
    if cursor.bound is not None:
        beyond = last > cursor.bound if sweep.descending else last < cursor.bound
        if beyond or (cursor.strict and last == cursor.bound):
            raise AnswerError(
                f"search answered {sweep.prop} {last} outside its window ({cursor.bound})")
        if last == cursor.bound:  # the whole page at the bound: skip further into it
            return Cursor(sweep=cursor.sweep, bound=last, after=cursor.after + len(seen))
    trailing = 0
    for record in reversed(seen):
        if record.at != last:
            break
        trailing += 1
    return Cursor(sweep=cursor.sweep, bound=last, after=trailing)


def _id_beyond(record_id: str, last_id: str, descending: bool) -> bool:
    try:
        new, old = int(record_id), int(last_id)
    except ValueError:
        return False
    return new < old if descending else new > old
