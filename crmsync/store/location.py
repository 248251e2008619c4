"""Where the state is: a SQLite file path, or a PostgreSQL URL (`daemon.state_url`).

`open_store` takes either; `is_database_url` tells them apart. A URL may carry a
password (the config reads it from `env:` or `file:`), so every message shows it
through `redact`, never as given.
"""

from __future__ import annotations

import os
import re
from typing import Final

URL_SCHEMES: Final = ("postgresql://", "postgres://")
MASK: Final = "***"
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")


def is_database_url(location: str | os.PathLike[str]) -> bool:
    """Whether `location` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(location, str) and location.lower().startswith(URL_SCHEMES)


def redact(url: str) -> str:
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
    """The password written in `url`, to scrub it from a driver's error text."""
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
