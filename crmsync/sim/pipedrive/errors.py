"""Pipedrive's error bodies; handlers raise `PipedriveError`, the gateway renders it.

Every error is `{"success": false, "error", "error_info", "data": null,
"additional_data": null}`; 401 and 429 add `errorCode` (401 has no data keys at all,
as the real API answers). Messages about parameters name the parameter
(`Validation failed: limit: ...`) so a failing client shows which one it got wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from crmsync.sim._kit.errors import ApiError
from crmsync.sim._kit.http import json_response

JSONObject = dict[str, Any]
ERROR_INFO = "Please check developers.pipedrive.com"


class PipedriveError(ApiError):
    """An API error answer, rendered by the gateway middleware."""

    def __init__(
        self,
        status: int,
        error: str,
        *,
        info: str = ERROR_INFO,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, error, headers=headers)
        self.error = error
        self.info = info

    def body(self) -> JSONObject:
        if self.status == 401:
            return {"success": False, "error": self.error, "errorCode": 401,
                    "error_info": self.info}
        body: JSONObject = {"success": False, "error": self.error}
        if self.status == 429:
            body["errorCode"] = 429
        body.update({"error_info": self.info, "data": None, "additional_data": None})
        return body


def unauthorized() -> PipedriveError:
    return PipedriveError(401, "unauthorized access")


def invalid(name: str, detail: str) -> PipedriveError:
    """400 naming the parameter or field."""
    return PipedriveError(400, f"Validation failed: {name}: {detail}")


def path_id(request: web.Request) -> int:
    """The route's `{id}`, an integer (a 400 naming `id` otherwise)."""
    raw = request.match_info["id"]
    if not raw.isdigit():
        raise invalid("id", "must be an integer")
    return int(raw)


def not_found(what: str) -> PipedriveError:
    return PipedriveError(404, f"{what} not found")


def ok(data: object, additional_data: object = None, status: int = 200) -> web.Response:
    """The success envelope every answer uses."""
    return json_response(
        {"success": True, "data": data, "additional_data": additional_data}, status=status
    )


async def read_object(request: web.Request) -> JSONObject:
    """The request body as a JSON object, or a 400."""
    raw = await request.read()
    try:
        body = msgspec.json.decode(raw) if raw else None
    except msgspec.DecodeError:
        raise PipedriveError(400, "Request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise PipedriveError(400, "Request body must be a JSON object")
    return body


def only(body: Mapping[str, object], allowed: frozenset[str], *, strict: bool) -> None:
    """400 for a field the endpoint does not know (when the sim is strict)."""
    unknown = sorted(set(body) - allowed)
    if strict and unknown:
        raise invalid(unknown[0], "unknown field")
