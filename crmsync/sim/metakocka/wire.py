"""Metakocka's wire format: the `opr_code` envelope, string scalars, HTML error pages.

- Application errors are HTTP 200 with `{"opr_code": "N", "opr_desc": "..."}`; handlers
  raise `MkError` and the gateway renders it. The codes are Metakocka's: 1 internal,
  2 parameter missing or wrong (also "No partner with such properties."), 3 bad
  `secret_key`/`company_id`, 4 IP not allowed, 5 "Quote exceeds" (call limit), 6
  application error.
- `to_wire` renders every scalar as a string (`"true"`, `"15"`) and drops empty
  values; a one-element list under a known key may come back as the bare object, as
  Metakocka's answers do (`Collapse` decides, from a seeded generator).
- A request outside the served endpoints (the `json/` family, a typo, a GET) gets an
  HTML page, not JSON.
- Input: `text`, `flag` and `number` read request fields the way Metakocka accepts them
  (strings, as its docs send; JSON booleans and numbers where those make sense), with
  the documented field lengths.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from crmsync.sim._kit.http import json_response

JSONObject = dict[str, Any]

INTERNAL, PARAMETER, AUTH, IP_NOT_ALLOWED, QUOTE, APPLICATION = "1", "2", "3", "4", "5", "6"
NO_PARTNER = "No partner with such properties."
QUOTE_EXCEEDS = "Quote exceeds"
INVALID_CREDENTIALS = "Invalid value for secret_key and company_id"
# Lists Metakocka may answer with a single object when they hold one element.
COLLAPSIBLE = frozenset({
    "partner_list", "partner_contact_list", "partner_delivery_address_list",
    "mk_address_id_list", "result",
})


class MkError(Exception):
    """An application error: HTTP 200, `opr_code` and `opr_desc`."""

    def __init__(self, opr_code: str, opr_desc: str) -> None:
        super().__init__(opr_desc)
        self.opr_code = opr_code
        self.opr_desc = opr_desc

    def response(self) -> web.Response:
        return json_response({"opr_code": self.opr_code, "opr_desc": self.opr_desc})


def parameter_error(message: str) -> MkError:
    return MkError(PARAMETER, message)


class Collapse:
    """Whether a one-element list is answered as the bare object (seeded draws)."""

    def __init__(self, rate: float, seed: int) -> None:
        self.rate = rate
        self.rng = random.Random(seed)

    def __call__(self) -> bool:
        return self.rate >= 1.0 or (self.rate > 0.0 and self.rng.random() < self.rate)


def to_wire(value: Any, collapse: Collapse, key: str = "") -> Any:
    """`value` with every scalar a string, empty values dropped, and lists collapsed."""
    if isinstance(value, Mapping):
        return {
            k: to_wire(v, collapse, k)
            for k, v in value.items()
            if v is not None and v != "" and v != []
        }
    if isinstance(value, list):
        items = [to_wire(item, collapse) for item in value]
        if len(items) == 1 and key in COLLAPSIBLE and collapse():
            return items[0]
        return items
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def html_page(status: int, title: str) -> web.Response:
    """The kind of page Metakocka's server answers outside its JSON endpoints."""
    body = (
        f"<!doctype html><html><head><title>HTTP Status {status} - {title}</title></head>"
        f"<body><h1>HTTP Status {status} - {title}</h1></body></html>"
    )
    return web.Response(status=status, text=body, content_type="text/html")


# -- reading request fields -----------------------------------------------------------

MAX_LENGTH = {
    "customer": 100, "street": 150, "post_number": 20, "place": 100, "city": 100,
    "province": 50, "country": 50, "tax_id_number": 50, "registration_number": 50,
    "name": 100, "email": 255, "gsm": 50, "phone": 50, "fax": 50,
}


def text(obj: Mapping[str, Any], key: str) -> str | None:
    """A string field (None when absent), within Metakocka's documented length."""
    if key not in obj or obj[key] is None:
        return None
    value = obj[key]
    if not isinstance(value, str):
        raise parameter_error(f"Field {key} must be a string value.")
    limit = MAX_LENGTH.get(key)
    if limit is not None and len(value) > limit:
        raise parameter_error(f"Field {key} is too long (max {limit} characters).")
    return value


def flag(obj: Mapping[str, Any], key: str) -> bool | None:
    """A boolean field: `"true"` / `"false"` (or a JSON boolean); None when absent."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise parameter_error(f"Field {key} must be true or false.")


def number(obj: Mapping[str, Any], key: str, default: int) -> int:
    """A non-negative whole number: a digit string (or a JSON integer)."""
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise parameter_error(f"Field {key} must be a whole number.")


def child(obj: Mapping[str, Any], key: str) -> JSONObject | None:
    """A nested object (None when absent); a list where one object belongs is an error."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise parameter_error(f"Field {key} must be an object.")
    return value


def children(obj: Mapping[str, Any], key: str) -> list[JSONObject]:
    """A list of objects; a single object counts as a one-element list."""
    value = obj.get(key)
    if value is None:
        return []
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise parameter_error(f"Field {key} must be a list of objects.")
    return items
