"""Wire helpers shared by the simulator's routes: JSON bodies, Quo error bodies, ids, times.

Quo's error body is `{"message", "code", "status", "docs", "title"}` plus `errors` for
validation failures (TypeBox-style items: `path`, `message`, `value`, `schema`). The
gateway's own 429 is Kong's bare `{"message": "API rate limit exceeded"}`.
"""

from __future__ import annotations

import base64
import random
from datetime import UTC, datetime
from typing import Any

import msgspec
from aiohttp import web

from crmsync.sim._kit.http import json_response as json_response  # re-exported for routes

DOCS_URL = "https://openphone.com/docs"
RATE_LIMIT_BODY = {"message": "API rate limit exceeded"}

JsonObject = dict[str, Any]


class BadRequestError(Exception):
    """A request failed validation; `errors` are TypeBox-style items."""

    def __init__(
        self, errors: list[JsonObject], *, code: str = "0800400", title: str = "Bad Request"
    ) -> None:
        super().__init__(errors[0]["message"] if errors else title)
        self.errors = errors
        self.code = code
        self.title = title


def field_error(path: str, message: str, value: Any, schema_type: str) -> JsonObject:
    """One TypeBox-style validation error item."""
    item: JsonObject = {"path": path, "message": message, "schema": {"type": schema_type}}
    if value is not None:
        item["value"] = value
    return item


def error_body(
    status: int, code: str, title: str, message: str | None = None
) -> JsonObject:
    """Quo's error shape for non-validation errors."""
    return {
        "message": message or title,
        "code": code,
        "status": status,
        "docs": DOCS_URL,
        "title": title,
    }


def error_response(
    status: int, code: str, title: str, message: str | None = None
) -> web.Response:
    return json_response(error_body(status, code, title, message), status)


def bad_request_response(exc: BadRequestError) -> web.Response:
    body = error_body(400, exc.code, exc.title, str(exc))
    body["errors"] = exc.errors
    return json_response(body, 400)


def not_found(code: str = "0800404", message: str = "Not Found") -> web.Response:
    return error_response(404, code, "Not Found", message)


def unauthorized() -> web.Response:
    return error_response(401, "0800401", "Unauthorized")


def server_error(status: int = 500) -> web.Response:
    if status == 500:
        return error_response(500, "0801500", "Unknown")
    return error_response(status, f"0801{status}", "Unknown")


def now_iso() -> str:
    """An ISO 8601 UTC timestamp with milliseconds, like Quo's `createdAt`."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class IdFactory:
    """Seeded ids in Quo's formats: contacts are bare hex, others carry a prefix."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def hex(self, digits: int) -> str:
        return f"{self._rng.getrandbits(digits * 4):0{digits}x}"

    def contact(self) -> str:
        return self.hex(21)  # like the spec's example 664d0db69fcac7cf2e6ec

    def item(self) -> str:
        return self.hex(24)  # ids of a contact's emails and phone numbers

    def prefixed(self, prefix: str) -> str:
        return prefix + self.hex(32 if prefix == "EV" else 24)

    def key(self) -> str:
        """A webhook signing key: 32 random bytes, base64."""
        return base64.b64encode(self._rng.randbytes(32)).decode()


async def read_json(request: web.Request) -> Any:
    """The request's JSON body, or BadRequestError when it is missing or malformed."""
    raw = await request.read()
    if not raw:
        raise BadRequestError([field_error("", "Expected object", None, "object")])
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        invalid = field_error("", f"Invalid JSON body: {exc}", None, "object")
        raise BadRequestError([invalid]) from exc


def max_results(request: web.Request, maximum: int) -> int:
    """The required `maxResults` query parameter, 1..maximum."""
    raw = request.query.get("maxResults")
    if raw is None:
        missing = field_error("/maxResults", "Expected required property", None, "integer")
        raise BadRequestError([missing])
    try:
        value = int(raw)
    except ValueError:
        not_int = field_error("/maxResults", "Expected integer", raw, "integer")
        raise BadRequestError([not_int]) from None
    if value < 1:
        message = "Expected integer to be greater or equal to 1"
    elif value > maximum:
        message = f"Expected integer to be less or equal to {maximum}"
    else:
        return value
    raise BadRequestError([field_error("/maxResults", message, value, "integer")])


def encode_page_token(kind: str, position: int) -> str:
    """An opaque page token pointing after `position` of a `kind` listing."""
    return base64.urlsafe_b64encode(f"{kind}:{position}".encode()).decode().rstrip("=")


def decode_page_token(request: web.Request, kind: str) -> int:
    """The position encoded in `pageToken` (0 when absent); BadRequestError if forged."""
    token = request.query.get("pageToken")
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, position = text.partition(":")
        if prefix == kind:
            return int(position)
    except (ValueError, UnicodeDecodeError):
        pass
    raise BadRequestError([field_error("/pageToken", "Invalid page token", token, "string")])
