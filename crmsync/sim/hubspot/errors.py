"""HubSpot's error shape and the request-parsing helpers every route shares.

Every HubSpot error body is `{"status": "error", "message", "correlationId",
"category"}`, sometimes with `errors` (details) or, for rate limits, `errorType` and
`policyName` instead of `category`. Handlers raise `HubSpotError`; the middleware turns
it into a response, so no handler builds an error response by hand.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

from crmsync.sim._kit.errors import ApiError
from crmsync.sim._kit.http import json_response as json_response  # re-exported for routes

JSONObject = dict[str, Any]
AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 authentication "
    "and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
    "oauth-overview"
)


class HubSpotError(ApiError):
    """A HubSpot API error, rendered by the middleware."""

    def __init__(
        self,
        status: int,
        category: str | None,
        message: str,
        *,
        errors: list[JSONObject] | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, message, headers=headers)
        self.category = category
        self.errors = errors
        self.extra = dict(extra or {})

    def body(self) -> JSONObject:
        body: JSONObject = {"status": "error", "message": self.message,
                            "correlationId": str(uuid.uuid4())}
        if self.category is not None:
            body["category"] = self.category
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


def validation_error(message: str, errors: list[JSONObject] | None = None) -> HubSpotError:
    return HubSpotError(400, "VALIDATION_ERROR", message, errors=errors)


def not_found(message: str) -> HubSpotError:
    return HubSpotError(404, "OBJECT_NOT_FOUND", message)


def unauthorized() -> HubSpotError:
    return HubSpotError(401, "INVALID_AUTHENTICATION", AUTH_MESSAGE)


def rate_limited(policy: str) -> HubSpotError:
    """429 of one policy: `TEN_SECONDLY_ROLLING`, `SECONDLY` (search) or `DAILY`."""
    wording = {"TEN_SECONDLY_ROLLING": "ten_secondly_rolling", "SECONDLY": "secondly",
               "DAILY": "daily"}[policy]
    return HubSpotError(429, None, f"You have reached your {wording} limit.",
                        extra={"errorType": "RATE_LIMIT", "policyName": policy})


def only_fields(body: JSONObject, allowed: frozenset[str], where: str) -> None:
    """HubSpot's 400 for fields of `body` not in `allowed` (`where`: "in create")."""
    unknown = set(body) - allowed
    if unknown:
        raise validation_error(f"Unrecognized field(s) {sorted(unknown)} {where}.")


async def read_json_object(request: web.Request) -> JSONObject:
    """The request body as a JSON object, or HubSpot's 400."""
    raw = await request.read()
    try:
        body = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise validation_error(f"Invalid input JSON: {exc}") from None
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON: expected an object.")
    return body


def int_param(raw: object, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """An integer in [minimum, maximum] given as a number or a string (HubSpot takes both)."""
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise validation_error(f"{name} must be an integer.")
    try:
        value = int(raw)
    except ValueError:
        raise validation_error(f"{name} must be an integer, got {raw!r}.") from None
    if not minimum <= value <= maximum:
        raise validation_error(f"{name} must be between {minimum} and {maximum}, got {value}.")
    return value


def object_id(raw: object, what: str = "id") -> int:
    """A numeric HubSpot object id (`"501"` or 501); 400 otherwise."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise validation_error(f"{what} must be a numeric id.")
    text = str(raw).strip()
    if not text.isdigit():
        raise validation_error(f"{what} must be a numeric id, got {raw!r}.")
    return int(text)


def batch_inputs(body: JSONObject, *, maximum: int = 100) -> list[int]:
    """`inputs: [{"id": ...}]` of a batch read: at most `maximum`, duplicates dropped."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise validation_error("inputs is required and must be a list.")
    if len(inputs) > maximum:
        raise validation_error(
            f"Batch input size {len(inputs)} exceeds the maximum of {maximum}.")
    ids: list[int] = []
    for item in inputs:
        if not isinstance(item, dict) or "id" not in item:
            raise validation_error('Each input must be an object with an "id".')
        ids.append(object_id(item["id"], "inputs[].id"))
    return list(dict.fromkeys(ids))
