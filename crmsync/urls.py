"""Database URLs that may carry a password, shown without it (config and store both)."""

from __future__ import annotations

import re
from typing import Final

MASK: Final = "***"
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")


def mask_password(url: str) -> str:
    """`url` with its password (`user:PASSWORD@…`, `?password=…`) replaced by `***`.

    Errs on the side of hiding: everything between the user name and the last `@` is
    masked, so a password with an unescaped `@` or `/` is hidden whole.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    at = rest.rfind("@")
    if at >= 0:
        user, colon, _ = rest[:at].partition(":")
        if colon:
            rest = f"{user}:{MASK}@{rest[at + 1:]}"
    return _QUERY_PASSWORD.sub(rf"\g<1>{MASK}", f"{scheme}://{rest}")


def password_of(url: str) -> str | None:
    """The password written in `url` (None if none), e.g. to scrub it from error text."""
    _, sep, rest = url.partition("://")
    at = rest.rfind("@")
    if sep and at >= 0:
        _, colon, password = rest[:at].partition(":")
        if colon and password:
            return password
    match = _QUERY_PASSWORD.search(url)
    if match is not None:
        value = url[match.end(1) : match.end()]
        return value or None
    return None


def has_password(url: str) -> bool:
    """Whether `url` carries a password, even an empty `?password=`."""
    _, sep, rest = url.partition("://")
    at = rest.rfind("@")
    return bool(sep and at >= 0 and ":" in rest[:at]) or bool(_QUERY_PASSWORD.search(url))
