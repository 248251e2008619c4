"""Small helpers for tests that drive the simulator over real HTTP.

`SimApi` sends raw requests (no retries, no limiter: tests must see every 4xx/429),
and `wait_until` polls a condition against a deadline instead of sleeping a guess.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec


@dataclass(frozen=True, slots=True)
class ApiResponse:
    """Status, decoded JSON (None for an empty body), raw bytes and headers."""

    status: int
    json: Any
    body: bytes
    headers: dict[str, str]


class SimApi:
    """Plain requests against a simulator base URL with one API key.

    `headers` go on every request (e.g. `{"Quo-Api-Version": "2026-03-30"}` for the
    unprefixed 2026-03-30 routes, whose base URL is the simulator's root).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.headers = dict(headers or {})

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: list[tuple[str, str]] | dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ApiResponse:
        sent = dict(self.headers)
        if self.api_key is not None:
            sent["Authorization"] = self.api_key
        sent.update(headers or {})
        data = None if json is None else msgspec.json.encode(json)
        if data is not None:
            sent["Content-Type"] = "application/json"
        async with self.session.request(
            method, self.base_url + path, data=data, params=params, headers=sent
        ) as response:
            raw = await response.read()
            decoded = msgspec.json.decode(raw) if raw else None
            return ApiResponse(response.status, decoded, raw, dict(response.headers))

    async def get(self, path: str, **kwargs: Any) -> ApiResponse:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> ApiResponse:
        return await self.request("POST", path, **kwargs)

    async def patch(self, path: str, **kwargs: Any) -> ApiResponse:
        return await self.request("PATCH", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> ApiResponse:
        return await self.request("DELETE", path, **kwargs)


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    *,
    within: float = 5.0,
    interval: float = 0.02,
    message: str = "condition",
) -> None:
    """Poll `condition` (sync or async) until true; TimeoutError after `within` s."""
    try:
        async with asyncio.timeout(within):
            while True:
                result = condition()
                if not isinstance(result, bool):
                    result = await result
                if result:
                    return
                await asyncio.sleep(interval)
    except TimeoutError as exc:
        raise TimeoutError(f"{message} not met within {within} s") from exc


def contact_body(
    external_id: str | None,
    first_name: str | None = "Ada",
    *,
    phones: list[str] | None = None,
    emails: list[str] | None = None,
    source: str = "attio",
) -> dict[str, Any]:
    """A valid `POST /v1/contacts` body."""
    body: dict[str, Any] = {
        "defaultFields": {
            "firstName": first_name,
            "lastName": "Lovelace",
            "phoneNumbers": [{"name": "mobile", "value": p} for p in phones or []],
            "emails": [{"name": "work", "value": e} for e in emails or []],
        },
        "source": source,
    }
    if external_id is not None:
        body["externalId"] = external_id
    return body
