"""Attio's error shape and JSON helpers shared by every route.

Every Attio error body is `{"status_code", "type", "code", "message"}`. Handlers raise
`AttioError`; the middleware turns it into a response, so a handler never builds an
error response by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from crmsync.sim._kit.errors import ApiError
from crmsync.sim._kit.http import json_response as json_response  # re-exported for routes

JSONObject = dict[str, Any]


class AttioError(ApiError):
    """An Attio API error, rendered by the middleware."""

    def __init__(
        self,
        status: int,
        error_type: str,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.error_type = error_type
        self.code = code

    def body(self) -> JSONObject:
        return {
            "status_code": self.status,
            "type": self.error_type,
            "code": self.code,
            "message": self.message,
        }


def not_found(message: str) -> AttioError:
    return AttioError(404, "invalid_request_error", "not_found", message)


def record_not_found(record_id: str) -> AttioError:
    return not_found(f'Record with ID "{record_id}" not found.')


def validation_error(message: str) -> AttioError:
    return AttioError(400, "invalid_request_error", "validation_type", message)


def filter_error() -> AttioError:
    return AttioError(400, "invalid_request_error", "filter_error", "Error in filter.")


async def read_json_object(request: web.Request) -> JSONObject:
    """The request body as a JSON object, or a 400 in Attio's shape."""
    raw = await request.read()
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        raise validation_error("Request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise validation_error("Request body must be a JSON object.")
    return body


def data_object(body: JSONObject) -> JSONObject:
    """`body["data"]`, which every Attio write wraps its payload in."""
    data = body.get("data")
    if not isinstance(data, dict):
        raise validation_error('Body must contain an object at "data".')
    return data


def query_int(request: web.Request, name: str, default: int, *, maximum: int) -> int:
    """A non-negative integer query parameter no larger than `maximum`."""
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error(f'Query parameter "{name}" must be an integer.') from None
    if value < 0 or value > maximum:
        raise validation_error(f'Query parameter "{name}" must be between 0 and {maximum}.')
    return value
