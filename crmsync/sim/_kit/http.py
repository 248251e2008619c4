"""Small aiohttp helpers the simulators' routes and middlewares use.

`json_response` encodes with msgspec, fast enough for benchmark traffic. `route_template`
names a request by its route (`/v1/contacts/{id}`) rather than its concrete path, so
request counters stay bounded however many ids a client touches. `abort` cuts a
request's connection (an injected dropped connection).
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec
from aiohttp import web


def json_response(
    body: object, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """`body` as a JSON response."""
    return web.Response(
        body=msgspec.json.encode(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def route_template(request: web.Request, unmatched: str) -> str:
    """The matched route's template, or `unmatched` when no route matched."""
    resource = request.match_info.route.resource
    return unmatched if resource is None else resource.canonical


def abort(request: web.Request) -> web.Response:
    """Cut the connection; the response returned is never written."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=500)
