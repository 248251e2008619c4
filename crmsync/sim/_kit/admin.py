"""Pieces of the `/_sim/` admin routes the simulators share.

Admin routes have no authentication and no rate limit, and answer a bad request with
a plain 400 whose reason says what is wrong (`bad_request`); a simulator whose tests
decode every answer passes its own `BadRequest` (a JSON body, say).

- `read_body`: the request body as a JSON object (none at all reads as `{}`);
  `read_change`: the same for a change made "in the CRM's app", with its `notify`;
- `only`: a 400 naming the fields a route does not take;
- `add_fault_routes`: `GET|POST /_sim/faults`, which show the fault settings and apply
  a `FaultUpdate`-like body (decoded with msgspec, so an unknown field is a 400);
  `add_crm_fault_routes` for a simulator with `_kit.faults` faults and a deliverer.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from crmsync.sim._kit.delivery import DeliveryFaults
from crmsync.sim._kit.faults import F, FaultUpdate
from crmsync.sim._kit.http import json_response

BadRequest = Callable[[str], web.HTTPException]
S = TypeVar("S")
U = TypeVar("U")


def bad_request(message: str) -> web.HTTPException:
    """A plain 400 with `message` as its reason."""
    return web.HTTPBadRequest(reason=message)


async def read_body(request: web.Request, fail: BadRequest = bad_request) -> dict[str, Any]:
    """The body as a JSON object; `{}` when there is none."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise fail("body is not JSON") from None
    if not isinstance(body, dict):
        raise fail("body must be a JSON object")
    return body


async def read_change(
    request: web.Request, fail: BadRequest = bad_request
) -> tuple[dict[str, Any], bool]:
    """The body of an app change without its `notify`, and `notify` (default True:
    the change sends webhooks, as one made in the CRM's app would)."""
    body = await read_body(request, fail)
    return body, bool(body.pop("notify", True))


def only(body: dict[str, Any], allowed: Collection[str], fail: BadRequest = bad_request) -> None:
    """A 400 naming every field of `body` not in `allowed`."""
    unknown = set(body) - set(allowed)
    if unknown:
        raise fail(f"unknown fields: {', '.join(sorted(unknown))}")


def add_fault_routes(
    routes: web.RouteTableDef,
    key: web.AppKey[S],
    update: type[U],
    *,
    shown: Callable[[S], dict[str, Any]],
    apply: Callable[[S, U], None],
    fail: BadRequest = bad_request,
) -> None:
    """`GET /_sim/faults` → `shown(sim)`; `POST` decodes an `update`, applies it, shows."""

    async def get_faults(request: web.Request) -> web.Response:
        return json_response(shown(request.app[key]))

    async def set_faults(request: web.Request) -> web.Response:
        sim = request.app[key]
        try:
            body = msgspec.json.decode(await request.read(), type=update)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise fail(str(exc).replace("\n", " ")) from None
        apply(sim, body)
        return json_response(shown(sim))

    routes.get("/_sim/faults")(get_faults)
    routes.post("/_sim/faults")(set_faults)


def add_crm_fault_routes(
    routes: web.RouteTableDef,
    key: web.AppKey[S],
    update: type[FaultUpdate[F]],
    parts: Callable[[S], tuple[F, DeliveryFaults]],
    *,
    fail: BadRequest = bad_request,
) -> None:
    """`add_fault_routes` for faults `parts(sim)`: the API's and the webhook deliverer's."""

    def shown(sim: S) -> dict[str, Any]:
        faults, hooks = parts(sim)
        return faults.settings(hooks)

    def apply(sim: S, body: FaultUpdate[F]) -> None:
        body.apply(*parts(sim))

    add_fault_routes(routes, key, update, shown=shown, apply=apply, fail=fail)
