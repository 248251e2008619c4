"""`daemon.state_url`: the PostgreSQL database of the state, instead of `state_path`.

Written as the URL itself when it holds no password
(`postgresql://crmsync@db.internal/crmsync`: the password then comes from libpq's
`PGPASSWORD` or `~/.pgpass`), or as a reference to where the whole URL is kept,
`env:NAME` or `file:PATH` (the secrets' forms, `secret.py`), when it does. A password
written inline is refused like any inline secret (INTERFACE §3).

A `StateUrl` shows the reference or the URL with its password masked (`shown()`,
`repr`); `reveal()` gives the URL to connect with. Unlike the API keys it is resolved
even for the read-only commands: they read the state, so they need it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from crmsync.config.secret import SecretError, parse_reference, resolve_secret
from crmsync.urls import has_password, mask_password

SCHEMES: Final = ("postgresql", "postgres")
FORM: Final = "postgresql://USER@HOST[:PORT]/DATABASE"


class StateUrl:
    """The state database's URL; never shows its password."""

    __slots__ = ("_reference", "_url")

    def __init__(self, url: str, reference: str | None = None) -> None:
        self._url = url
        self._reference = reference

    @property
    def reference(self) -> str | None:
        """`env:NAME` / `file:PATH` when the URL was read from there, else None."""
        return self._reference

    def reveal(self) -> str:
        """The URL to connect with (password included: never print it)."""
        return self._url

    def masked(self) -> str:
        """The URL with its password as `***`."""
        return mask(self._url)

    def shown(self) -> str:
        """What the config says: the reference, or the URL (it has no password)."""
        return self._reference if self._reference is not None else self.masked()

    def __repr__(self) -> str:
        return f"StateUrl({self.shown()!r})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StateUrl):
            return NotImplemented
        return (self._reference, self._url) == (other._reference, other._url)

    def __hash__(self) -> int:
        return hash((self._reference, self._url))


def mask(url: str) -> str:
    """`url` with any password as `***` (`crmsync.urls.mask_password`)."""
    return mask_password(url)


def check_url(url: str, *, inline: bool) -> None:
    """`SecretError` (its message shows the URL masked) unless `url` is a usable
    PostgreSQL URL; `inline` (written in the file): it must carry no password."""
    if "://" not in url:
        # Not echoed: what an env: or file: reference holds may be a bare password.
        raise SecretError(f"must be a PostgreSQL URL ({FORM}), and this is not a URL")
    shown = mask(url)
    scheme = url.partition("://")[0].lower()
    if scheme not in SCHEMES:
        raise SecretError(f"must be a PostgreSQL URL ({FORM}), got {shown!r}")
    if any(c.isspace() for c in url) or not url.isprintable():
        raise SecretError(f"must be one URL without spaces or control characters, got {shown!r}")
    try:
        port = urlsplit(url).port
    except ValueError:
        raise SecretError(f"has an invalid host or port: {shown!r}") from None
    if port == 0:
        raise SecretError(f"has an invalid port: {shown!r}")
    if inline and has_password(url):
        raise SecretError(
            "must not hold a password inline: put the whole URL in env:NAME or file:PATH, "
            f"or the password in PGPASSWORD or ~/.pgpass (got {shown!r})"
        )


def parse_state_url(raw: str, environ: Mapping[str, str]) -> StateUrl:
    """`raw` as written in the config (a URL, or `env:`/`file:` holding one), resolved
    and checked; `SecretError` with a message that never shows a password."""
    if "://" in raw:
        check_url(raw, inline=True)
        return StateUrl(raw)
    try:
        parse_reference(raw)
    except SecretError:
        # Not echoed: it may be a password pasted on its own.
        raise SecretError(
            f"must be a PostgreSQL URL ({FORM}) or env:NAME / file:PATH holding one"
        ) from None
    url = resolve_secret(raw, environ).reveal()
    try:
        check_url(url, inline=False)
    except SecretError as exc:
        raise SecretError(f"{raw}: the URL there {exc}") from None
    return StateUrl(url, reference=raw)
