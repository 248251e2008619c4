"""Wire helpers of the 2026-03-30 surface (the unprefixed routes such as `/webhooks`).

Every request must carry `Quo-Api-Version: 2026-03-30`, checked before auth. Every
error, whatever its status, has one envelope: `{"title", "message", "docs"}` plus the
optional `trace` and `errors` (items with `path`, `message`, `value`, `schema`);
webhook routes add a `code` (`0303400` invalid id, `0304400` invalid input). A list is
`{"data": [...], "nextCursor": ...}` with `limit` 1-50 and an opaque `after` cursor.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import msgspec
from aiohttp import web

from crmsync.sim._kit import errors as kit_errors
from crmsync.sim._kit.http import json_response

API_VERSION = "2026-03-30"
VERSION_HEADER = "Quo-Api-Version"
DOCS_URL = "https://quo.com/docs"
INVALID_ID_CODE = "0303400"
INVALID_INPUT_CODE = "0304400"
WEBHOOK_ID = re.compile(r"^[0-9]+$")
MAX_LIMIT = 50
DEFAULT_LIMIT = 10

JsonObject = dict[str, Any]

TITLES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 409: "Conflict", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Unknown Error",
}


class ApiError(kit_errors.ApiError):
    """An error answer of the 2026-03-30 surface; the gateway renders it."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[JsonObject] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(status, message)
        self.errors = errors
        self.code = code

    def body(self) -> JsonObject:
        body: JsonObject = {
            "title": TITLES.get(self.status, "Error"), "message": self.message, "docs": DOCS_URL,
        }
        if self.code is not None:
            body["code"] = self.code
        if self.errors is not None:
            body["errors"] = self.errors
        return body


def invalid(path: str, message: str, value: Any, schema: JsonObject) -> ApiError:
    """A 400 validation failure of one field (`Validation failed for 1 field.`)."""
    return invalid_fields([{"path": path, "message": message, "value": value, "schema": schema}])


def invalid_fields(errors: list[JsonObject], code: str = INVALID_INPUT_CODE) -> ApiError:
    count = len(errors)
    message = f"Validation failed for {count} field{'' if count == 1 else 's'}."
    return ApiError(400, message, errors=errors, code=code)


def version_error() -> web.Response:
    """The 400 a request without (or with another) `Quo-Api-Version` gets, before auth."""
    message = (
        f"Unsupported or missing {VERSION_HEADER} header. Supported versions: {API_VERSION}"
    )
    return json_response(
        {"title": "Bad Request", "message": message, "docs": DOCS_URL}, 400
    )


def has_version(request: web.Request) -> bool:
    return request.headers.get(VERSION_HEADER) == API_VERSION


def webhook_id(request: web.Request) -> str:
    """The `{id}` path parameter, or 400 unless it is a stringified integer."""
    raw = request.match_info["id"]
    if not WEBHOOK_ID.match(raw):
        raise invalid_fields(
            [{"path": "/webhookId", "message": "Expected string to match '^[0-9]+$'",
              "value": raw, "schema": {"type": "String", "pattern": "^[0-9]+$"}}],
            code=INVALID_ID_CODE,
        )
    return raw


async def read_body(request: web.Request, *, required: bool = True) -> Any:
    """The decoded JSON body; None when empty and not required; 400 when malformed."""
    raw = await request.read()
    if not raw:
        if not required:
            return None
        raise invalid("/body", "Expected object", None, {"type": "object"})
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise invalid("/body", f"Invalid JSON body: {exc}", None, {"type": "object"}) from exc


def limit(request: web.Request) -> int:
    """`limit`: an integer 1-50, default 10."""
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    schema = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}
    try:
        value = int(raw)
    except ValueError:
        raise invalid("/query/limit", "Expected integer", raw, schema) from None
    if value < 1:
        raise invalid("/query/limit", "must be >= 1", value, schema)
    if value > MAX_LIMIT:
        raise invalid("/query/limit", f"must be <= {MAX_LIMIT}", value, schema)
    return value


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f'{{"lastSeq":{position}}}'.encode()).decode().rstrip("=")


def decode_cursor(request: web.Request) -> int | None:
    """The position an `after` cursor points after (None without one); 400 if forged."""
    token = request.query.get("after")
    if not token:
        return None
    try:
        decoded = msgspec.json.decode(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        if isinstance(decoded, dict) and isinstance(decoded.get("lastSeq"), int):
            return int(decoded["lastSeq"])
    except (ValueError, msgspec.DecodeError):
        pass
    raise invalid("/query/after", "Invalid cursor", token, {"type": "string"})


def unauthorized() -> web.Response:
    return ApiError(401, "You are unauthorized to access the webhook").response()


def rate_limited(headers: dict[str, str] | None) -> web.Response:
    body = ApiError(429, "API rate limit exceeded").body()
    return json_response(body, 429, headers)


def server_error(status: int) -> web.Response:
    if status == 500:
        return ApiError(500, "An unknown error occurred").response()
    return json_response(
        {"title": "Unknown Error", "message": "An unknown error occurred", "docs": DOCS_URL},
        status,
    )
