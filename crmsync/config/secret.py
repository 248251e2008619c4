"""Secrets in the config: `env:NAME` or `file:PATH` references, resolved at load time.

A resolved `Secret` keeps its reference for display and hides the value behind
`reveal()`, so printing a config, a tenant or an exception never leaks a key.
It is deliberately not a `str` subclass: a str would flow silently into log
lines, f-strings and JSON.

The read-only commands (`status`, `mappings`, `errors`, `inbox`) load the config with
its secrets unresolved (`unresolved_secret`): they never call an API, so they must not
need the keys in their environment. Such a `Secret` has only its reference; `reveal()`
raises `UnresolvedSecretError`, one line naming the reference, should anything ever
need the value.

Resolution reads files, so a reload from the event loop should run it in a thread.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from crmsync.errors import ConfigError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# A secret file holds one key; the cap keeps a wrong path (a log, /dev/zero) from being slurped.
MAX_SECRET_FILE_BYTES = 64 * 1024


class SecretError(ValueError):
    """A reference that cannot be resolved; the message never contains a secret value."""


class UnresolvedSecretError(ConfigError):
    """`reveal()` on a secret the config was loaded without (a read-only command's load):
    a bug in the command if it ever shows, still one line and exit 2, never a value."""

    def __init__(self, reference: str) -> None:
        super().__init__([
            f"secret {reference} was not read: this command loaded the config without "
            "its secrets (read-only)"
        ])


class Secret:
    """A secret: `reference` (`env:NAME`/`file:PATH`) is safe to show, `reveal()` not.

    `value` None is an unresolved secret (see the module docstring): only its reference
    is known, and `reveal()` raises `UnresolvedSecretError`.
    """

    __slots__ = ("_reference", "_value")

    def __init__(self, reference: str, value: str | None) -> None:
        self._reference = reference
        self._value = value

    @property
    def reference(self) -> str:
        return self._reference

    @property
    def resolved(self) -> bool:
        """Whether the value was read (False after a read-only load)."""
        return self._value is not None

    def reveal(self) -> str:
        if self._value is None:
            raise UnresolvedSecretError(self._reference)
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self._reference!r})"

    __str__ = __repr__

    # A rotated key behind the same reference compares unequal, so a config
    # reload notices it and restarts the tenant.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return (self._reference, self._value) == (other._reference, other._value)

    def __hash__(self) -> int:
        return hash((self._reference, self._value))


def parse_reference(reference: str) -> tuple[Literal["env", "file"], str]:
    """The scheme and target of `env:NAME` or `file:PATH`, checked without reading
    anything; `SecretError` (value-free) for anything else."""
    scheme, colon, target = reference.partition(":")
    if colon and scheme == "env":
        if not _ENV_NAME.fullmatch(target):
            # Not echoed: a key pasted after "env:" would land here.
            raise SecretError("'env:' must be followed by an environment variable name")
        return "env", target
    if colon and scheme == "file":
        if not target:
            raise SecretError("'file:' must be followed by a path")
        return "file", target
    raise SecretError("secrets must be 'env:NAME' or 'file:PATH', not inline values")


def resolve_secret(reference: str, environ: Mapping[str, str]) -> Secret:
    """Resolve `env:NAME` or `file:PATH`; raise `SecretError` with a value-free message."""
    scheme, target = parse_reference(reference)
    if scheme == "env":
        return Secret(reference, _from_env(target, environ))
    return Secret(reference, _from_file(target, environ))


def unresolved_secret(reference: str) -> Secret:
    """`reference` checked for its form only (`SecretError` as `resolve_secret` would
    say), its value not read: what a read-only command's config holds."""
    parse_reference(reference)
    return Secret(reference, None)


def _from_env(name: str, environ: Mapping[str, str]) -> str:
    value = environ.get(name)
    if value is None:
        raise SecretError(f"environment variable {name} is not set")
    if not value.strip():
        raise SecretError(f"environment variable {name} is empty")
    return value


def _from_file(target: str, environ: Mapping[str, str]) -> str:
    if "%d" in target:
        # systemd expands %d itself only in unit files; in our config we do it.
        directory = environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise SecretError(
                f"file:{target} uses %d but CREDENTIALS_DIRECTORY is not set "
                "(systemd sets it for LoadCredential=)"
            )
        target = target.replace("%d", directory)
    path = Path(target)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SECRET_FILE_BYTES + 1)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SecretError(f"file {path} cannot be read: {reason}") from None
    except ValueError:
        # open() refuses a path with a NUL byte before asking the OS.
        raise SecretError(f"file {path} cannot be read: the path contains a NUL byte") from None
    if len(data) > MAX_SECRET_FILE_BYTES:
        raise SecretError(
            f"file {path} is larger than {MAX_SECRET_FILE_BYTES} bytes (expected one value)"
        )
    try:
        value = data.decode().rstrip()
    except UnicodeDecodeError:
        raise SecretError(f"file {path} is not UTF-8 text") from None
    if not value:
        raise SecretError(f"file {path} is empty")
    return value
