"""The policing every API request of a simulated CRM passes, whatever the provider.

Order: dropped connection (nothing answered, not counted) → latency → `admit` (the
provider's auth, injected faults and rate limits: it raises to refuse) → handler →
`finish` (count the answer, add headers) → dropped connection after the handler
applied the request (counted: it was answered, the answer was lost). Errors raised by
`admit` or the handler become the provider's JSON error shape (`ErrorShape`):
`ApiError`s as they are, aiohttp's own 404 / 405 / 413 through `from_http`, and a
simulator bug as `crashed()`, logged loudly. `bearer_token` reads the key of the
providers that take one as `Authorization: Bearer`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from crmsync.sim._kit.errors import ApiError
from crmsync.sim._kit.faults import Faults
from crmsync.sim._kit.http import abort


def bearer_token(request: web.Request) -> str | None:
    """The token of the `Authorization: Bearer <token>` header (any case), or None."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


@dataclass(frozen=True, slots=True)
class ErrorShape:
    """How a provider answers what is not its own `ApiError`."""

    provider: str  # named in the log of a simulator bug
    from_http: Callable[[web.HTTPException], ApiError]  # aiohttp's 404, 405, 413...
    crashed: Callable[[], ApiError]  # a simulator bug
    logger: logging.Logger


async def police(
    request: web.Request,
    handler: Handler,
    faults: Faults,
    shape: ErrorShape,
    *,
    admit: Callable[[], None],
    finish: Callable[[web.StreamResponse], None],
) -> web.StreamResponse:
    """Answer `request` through the steps of the module docstring."""
    if faults.take_drop():
        return abort(request)
    delay = faults.delay()
    if delay > 0:
        await asyncio.sleep(delay)
    applied = False
    try:
        admit()
        applied = True  # the handler runs: the request may take effect
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    except web.HTTPException as exc:
        response = shape.from_http(exc).response()
    except Exception:  # a simulator bug: still answer in the provider's shape, and say so
        shape.logger.exception(
            "%s simulator failed on %s %s", shape.provider, request.method, request.path
        )
        response = shape.crashed().response()
    finish(response)
    if applied and faults.take_drop_after():
        return abort(request)
    return response
