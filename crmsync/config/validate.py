"""Walk parsed TOML against the Struct tree and collect every problem, not just the first.

msgspec stops at the first error, but someone fixing a config wants the whole
list at once. So the walker follows `msgspec.inspect.type_info(Config)` through
the raw `tomllib` data, checking keys, types, ranges, patterns and choices from
the same `Meta` constraints msgspec enforces, and resolving secrets on the way (or,
for a read-only command, only checking their form: see `secret.py`; `daemon.state_url`
is resolved always, `state_url.py`). Only when nothing
is wrong is the result handed to `msgspec.convert`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Mapping
from typing import Any

import msgspec.inspect as mi

from crmsync.config.model import Config
from crmsync.config.secret import Secret, SecretError, resolve_secret, unresolved_secret
from crmsync.config.state_url import StateUrl, parse_state_url

Problem = tuple[str, str]  # (key path, message)

_SCHEMA = mi.type_info(Config)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # TOML's bare keys


def validate(
    raw: dict[str, Any], environ: Mapping[str, str], *, resolve_secrets: bool = True
) -> tuple[object, list[Problem]]:
    """Return `raw` with secrets resolved, plus every problem found, in file order.

    `resolve_secrets=False` checks each secret reference's form but reads nothing: the
    `Secret`s are unresolved and `environ` is not consulted for them.
    """
    walker = _Walker(environ, resolve_secrets=resolve_secrets)
    data = walker.value(raw, _SCHEMA, "")
    tenants = raw.get("tenants")
    if isinstance(tenants, list):
        walker.unique_ids(tenants)
    daemon = raw.get("daemon")
    if isinstance(daemon, dict) and "state_path" in daemon and "state_url" in daemon:
        walker.report(
            "daemon.state_url",
            "set either state_path (a SQLite file) or state_url (PostgreSQL), not both",
        )
    return data, walker.problems


def _kind(value: object) -> str:
    """How a TOML value is named in messages."""
    match value:
        case bool():
            return "a boolean"
        case int():
            return "an integer"
        case float():
            return "a number"
        case str():
            return "a string"
        case list():
            return "an array"
        case dict():
            return "a table"
        case dt.datetime() | dt.date() | dt.time():
            return "a date/time"
    return type(value).__name__


def _show(value: str) -> str:
    """Quote a (non-secret) value for a message, cut short so one problem stays one line."""
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _join(path: str, key: str) -> str:
    # A key TOML would need quotes for (a dot, a space, a line break, empty) is quoted,
    # so the path stays one unambiguous line.
    shown = key if _BARE_KEY.fullmatch(key) else _show(key)
    return f"{path}.{shown}" if path else shown


def _one_line(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped (a secret file's
    path is echoed as written, and a problem must stay one line)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class _Walker:
    def __init__(self, environ: Mapping[str, str], *, resolve_secrets: bool) -> None:
        self.environ = environ
        self.resolve_secrets = resolve_secrets
        self.problems: list[Problem] = []

    def report(self, path: str, message: str) -> None:
        self.problems.append((path, _one_line(message)))

    def value(self, raw: object, t: mi.Type, path: str, error: str | None = None) -> object:
        """Check `raw` against `t`; `error` is a Meta template for a rejected value."""
        match t:
            case mi.Metadata(type=inner, extra=extra):
                return self.value(raw, inner, path, (extra or {}).get("error"))
            case mi.UnionType(types=types):
                # TOML has no null, so an optional key that is present holds the other member.
                (member,) = (m for m in types if not isinstance(m, mi.NoneType))
                return self.value(raw, member, path, error)
            case mi.StructType(fields=fields):
                if not isinstance(raw, dict):
                    self.report(path, f"expected a table, got {_kind(raw)}")
                    return raw
                return self.table(raw, fields, path)
            case mi.VarTupleType(item_type=item_type, min_length=min_length):
                return self.array(raw, item_type, min_length, path)
            case mi.CustomType(cls=cls) if cls is Secret:
                return self.secret(raw, path)
            case mi.CustomType(cls=cls) if cls is StateUrl:
                return self.state_url(raw, path)
            case _:
                self.scalar(raw, t, path, error)
                return raw

    def table(self, raw: dict[str, Any], fields: tuple[mi.Field, ...], path: str) -> object:
        by_name = {f.name: f for f in fields}
        out: dict[str, object] = {}
        for key, value in raw.items():
            field = by_name.get(key)
            if field is None:
                close = difflib.get_close_matches(key, by_name, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.report(_join(path, key), f"unknown key{hint}")
            else:
                out[key] = self.value(value, field.type, _join(path, key))
        for field in fields:
            if field.required and field.name not in raw:
                self.report(_join(path, field.name), "required key is missing")
        return out

    def array(self, raw: object, item: mi.Type, min_length: int | None, path: str) -> object:
        if not isinstance(raw, list):
            # The usual slip is [tenants] where [[tenants]] was meant.
            table = isinstance(item, mi.StructType)
            want = f"an array of tables ([[{path}]])" if table else "an array"
            self.report(path, f"expected {want}, got {_kind(raw)}")
            return raw
        if min_length and len(raw) < min_length:
            self.report(path, "must not be empty")
        return [self.value(v, item, f"{path}[{i}]") for i, v in enumerate(raw)]

    def secret(self, raw: object, path: str) -> object:
        if not isinstance(raw, str):
            self.report(path, f"expected a string, got {_kind(raw)}")
            return raw
        try:
            if not self.resolve_secrets:
                return unresolved_secret(raw)
            return resolve_secret(raw, self.environ)
        except SecretError as exc:
            self.report(path, str(exc))
            return None

    def state_url(self, raw: object, path: str) -> object:
        # Resolved even when secrets are not: every command that reads the state needs it.
        if not isinstance(raw, str):
            self.report(path, f"expected a string, got {_kind(raw)}")
            return raw
        try:
            return parse_state_url(raw, self.environ)
        except SecretError as exc:
            self.report(path, str(exc))
            return None

    def scalar(self, raw: object, t: mi.Type, path: str, error: str | None) -> None:
        match t:
            case mi.BoolType():
                ok, want = isinstance(raw, bool), "a boolean"
            case mi.IntType():
                ok, want = isinstance(raw, int) and not isinstance(raw, bool), "an integer"
            case mi.FloatType():
                ok, want = isinstance(raw, int | float) and not isinstance(raw, bool), "a number"
            case mi.StrType() | mi.LiteralType():
                ok, want = isinstance(raw, str), "a string"
            case _:
                raise TypeError(f"config schema uses an unsupported type at {path}: {t!r}")
        if not ok:
            self.report(path, f"expected {want}, got {_kind(raw)}")
            return
        if message := _rejection(raw, t, error):
            self.report(path, message)

    def unique_ids(self, tenants: list[object]) -> None:
        first_seen: dict[str, int] = {}
        for i, tenant in enumerate(tenants):
            tenant_id = tenant.get("id") if isinstance(tenant, dict) else None
            if not isinstance(tenant_id, str):
                continue
            first = first_seen.setdefault(tenant_id, i)
            if first != i:
                message = f"duplicate tenant id {_show(tenant_id)} (also tenants[{first}])"
                self.report(f"tenants[{i}].id", message)


def _bound(value: float | None) -> str:
    """A bound as the model wrote it: msgspec may hand back `ge=0` as 0.0 once the
    Struct has been decoded (its cached type info), which must not change the message."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _rejection(raw: Any, t: mi.Type, error: str | None) -> str | None:
    """Why a value of the right type is still unacceptable, or None if it is fine."""
    match t:
        case mi.IntType(ge=lo, le=hi) | mi.FloatType(ge=lo, le=hi):
            # `not lo <= raw` rather than `raw < lo` so that nan is rejected too; the
            # model gives every number both bounds.
            if (lo is not None and not lo <= raw) or (hi is not None and not raw <= hi):
                return f"must be between {_bound(lo)} and {_bound(hi)}, got {raw!r}"
        case mi.StrType(min_length=min_length, pattern=pattern):
            if min_length and len(raw) < min_length:
                return "must not be empty"
            if pattern and not re.search(pattern, raw):
                template = error or "must match {pattern}, got {value}"
                return template.format(value=_show(raw), pattern=pattern)
        case mi.LiteralType(values=values) if raw not in values:
            template = error or "must be one of: {choices}, got {value}"
            return template.format(value=_show(raw), choices=", ".join(map(str, values)))
    return None
