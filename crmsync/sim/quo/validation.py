"""Validation of contact bodies the way Quo's TypeBox schemas do it.

Error items copy TypeBox's wording ("Expected required property", "Expected string
length less or equal to 75", ...), since that is what real 400s contain. Create and
PATCH differ where the spec differs: create requires `defaultFields.firstName` and
limits `source` to 72 characters, PATCH makes everything optional and allows 75.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

from crmsync.sim.quo.wire import BadRequestError, JsonObject, field_error

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
E164_PATTERN = r"^\+[1-9]\d{1,14}$"
RESERVED_SOURCES = frozenset({"openphone", "device", "csv", "zapier", "google-people", "other"})
RESERVED_SOURCE_PREFIXES = ("openphone", "csv")
NAME_FIELDS = ("firstName", "lastName", "company", "role")


class Checker:
    """Accumulates TypeBox-style errors for one body."""

    def __init__(self) -> None:
        self.errors: list[JsonObject] = []

    def fail(self, path: str, message: str, value: Any = None, kind: str = "string") -> None:
        self.errors.append(field_error(path, message, value, kind))

    def string(
        self,
        obj: JsonObject,
        key: str,
        path: str,
        *,
        required: bool = False,
        nullable: bool = False,
        min_len: int | None = None,
        max_len: int | None = None,
        pattern: tuple[re.Pattern[str], str] | None = None,
    ) -> None:
        """Check `obj[key]` against a (nullable) string schema."""
        where = f"{path}/{key}"
        if key not in obj:
            if required:
                self.fail(where, "Expected required property")
            return
        value = obj[key]
        if value is None and nullable:
            return
        if not isinstance(value, str):
            self.fail(where, "Expected union value" if nullable else "Expected string", value)
            return
        if min_len is not None and len(value) < min_len:
            self.fail(where, f"Expected string length greater or equal to {min_len}", value)
        elif max_len is not None and len(value) > max_len:
            self.fail(where, f"Expected string length less or equal to {max_len}", value)
        elif pattern is not None and not pattern[0].match(value):
            self.fail(where, f"Expected string to match '{pattern[1]}'", value)

    def uri(self, obj: JsonObject, key: str, path: str) -> None:
        value = obj.get(key)
        if isinstance(value, str) and 1 <= len(value) <= 200:
            parts = urlsplit(value)
            if not parts.scheme or not (parts.netloc or parts.path):
                self.fail(f"{path}/{key}", "Expected string to match 'uri' format", value)

    def raise_if_failed(self, code: str = "0800400") -> None:
        if self.errors:
            raise BadRequestError(self.errors, code=code)


def _labeled_items(check: Checker, fields: JsonObject, key: str, *, phone: bool) -> None:
    if key not in fields:
        return
    items = fields[key]
    path = f"/defaultFields/{key}"
    if not isinstance(items, list):
        check.fail(path, "Expected array", items, "array")
        return
    for index, item in enumerate(items):
        where = f"{path}/{index}"
        if not isinstance(item, dict):
            check.fail(where, "Expected object", item, "object")
            continue
        check.string(item, "name", where, required=True)
        check.string(
            item, "value", where, required=True, nullable=True,
            pattern=(E164, E164_PATTERN) if phone else None,
        )
        check.string(item, "id", where)


def _custom_fields(check: Checker, body: JsonObject, defined: Collection[str]) -> bool:
    """Check `customFields`; False if an item names a field the workspace lacks."""
    items = body.get("customFields")
    if items is None:
        return True
    if not isinstance(items, list):
        check.fail("/customFields", "Expected array", items, "array")
        return True
    known = True
    for index, item in enumerate(items):
        where = f"/customFields/{index}"
        if not isinstance(item, dict) or "value" not in item:
            check.fail(where, "Expected required property", item, "object")
            continue
        value = item["value"]
        scalar = value is None or isinstance(value, str | bool | int | float)
        if not scalar and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            check.fail(f"{where}/value", "Expected union value", value, "string")
        if item.get("key") not in defined and item.get("id") not in defined:
            known = False
    return known


def _source(check: Checker, body: JsonObject, *, max_len: int, nullable: bool) -> None:
    check.string(body, "source", "", nullable=nullable, min_len=1, max_len=max_len)
    source = body.get("source")
    # The spec lists the reserved words in lower case; matching is taken as exact.
    if isinstance(source, str) and (
        source in RESERVED_SOURCES or source.startswith(RESERVED_SOURCE_PREFIXES)
    ):
        check.fail("/source", f"Source '{source}' is reserved", source)


def validate_contact(body: Any, *, partial: bool, custom_fields: Collection[str]) -> JsonObject:
    """Return `body` if it is a valid create (or, with `partial`, PATCH) body."""
    check = Checker()
    if not isinstance(body, dict):
        raise BadRequestError([field_error("", "Expected object", body, "object")])
    fields = body.get("defaultFields")
    if fields is None and not partial:
        check.fail("/defaultFields", "Expected required property", None, "object")
    elif fields is not None and not isinstance(fields, dict):
        check.fail("/defaultFields", "Expected object", fields, "object")
    elif isinstance(fields, dict):
        for name in NAME_FIELDS:
            required = name == "firstName" and not partial
            check.string(fields, name, "/defaultFields", required=required, nullable=True)
        _labeled_items(check, fields, "emails", phone=False)
        _labeled_items(check, fields, "phoneNumbers", phone=True)
    _source(check, body, max_len=75 if partial else 72, nullable=partial)
    check.string(body, "sourceUrl", "", nullable=partial, min_len=1, max_len=200)
    check.uri(body, "sourceUrl", "")
    check.string(body, "externalId", "", nullable=True, min_len=1, max_len=75)
    if not partial:
        check.string(body, "createdByUserId", "", pattern=(re.compile(r"^US"), "^US(.*)$"))
    known = _custom_fields(check, body, custom_fields)
    check.raise_if_failed()
    if not known:
        raise BadRequestError(
            [field_error("/customFields", "Invalid Custom Field Item", None, "array")],
            code="0801400",
            title="Invalid Custom Field Item",
        )
    return body
