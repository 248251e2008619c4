"""Query parameters as Pipedrive checks them, and cursors bound to their parameters.

A v2 cursor is opaque: base64url of `[binding, key...]`, where the binding is a digest
of the sort and filter parameters it was issued for. Using it with other parameters
is a 400 (a client that changes `updated_since` between pages would otherwise skip or
repeat persons without noticing).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TypeVar

import msgspec
from aiohttp import web

from crmsync.sim.pipedrive.errors import PipedriveError, invalid

T = TypeVar("T", bound=str)


def check_known(request: web.Request, known: frozenset[str], *, strict: bool) -> None:
    unknown = sorted(set(request.query) - known)
    if strict and unknown:
        raise invalid(unknown[0], "unknown query parameter")


def int_param(
    request: web.Request, name: str, default: int, *, low: int = 0, high: int = 2**31
) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name, "must be an integer") from None
    if not low <= value <= high:
        raise invalid(name, f"must be between {low} and {high}")
    return value


def optional_int(request: web.Request, name: str) -> int | None:
    if request.query.get(name) in (None, ""):
        return None
    return int_param(request, name, 0, low=1)


def choice(request: web.Request, name: str, options: tuple[T, ...], default: T) -> T:
    raw = request.query.get(name)
    if raw is None:
        return default
    for option in options:
        if raw == option:
            return option
    raise invalid(name, f"must be one of {', '.join(options)}")


def bool_param(request: web.Request, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise invalid(name, "must be true or false")


def rfc3339(request: web.Request, name: str) -> datetime | None:
    """`2025-01-01T10:20:00Z` (or with an offset); a date-time without a zone is a 400."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if "T" not in raw:
        raise invalid(name, "must be an RFC 3339 date-time like 2025-01-01T10:20:00Z")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise invalid(name, "must be an RFC 3339 date-time like 2025-01-01T10:20:00Z") from None
    if moment.tzinfo is None:
        raise invalid(name, "must carry a time zone (Z or +hh:mm)")
    return moment.astimezone(UTC)


def id_list(request: web.Request, name: str, *, maximum: int = 100) -> list[int] | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise invalid(name, "must be comma-separated integer ids")
    if len(parts) > maximum:
        raise invalid(name, f"at most {maximum} ids")
    return [int(p) for p in parts]


def binding(request: web.Request, names: Iterable[str]) -> str:
    """A digest of the parameters a cursor is bound to, as the request gave them."""
    given = sorted((n, request.query.get(n, "")) for n in names)
    return hashlib.sha256(msgspec.json.encode(given)).hexdigest()[:16]


def encode_cursor(bound_to: str, key: Iterable[int]) -> str:
    raw = msgspec.json.encode([bound_to, *key])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(request: web.Request, bound_to: str, names: Iterable[str]) -> list[int] | None:
    """The key the cursor resumes after; None without a cursor; 400 when it is not ours
    or was issued for other parameters."""
    raw = request.query.get("cursor")
    if raw is None or raw == "":
        return None
    try:
        decoded = msgspec.json.decode(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise invalid("cursor", "not a valid cursor") from None
    if (
        not isinstance(decoded, list)
        or len(decoded) < 2
        or not isinstance(decoded[0], str)
        or not all(isinstance(k, int) for k in decoded[1:])
    ):
        raise invalid("cursor", "not a valid cursor")
    if decoded[0] != bound_to:
        raise PipedriveError(
            400,
            "Validation failed: cursor: the cursor was issued for other parameters "
            f"({', '.join(sorted(names))} must stay the same while paging)",
        )
    return [int(k) for k in decoded[1:]]


def digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())
