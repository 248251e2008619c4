"""Where the state is: a SQLite file path, or a PostgreSQL URL (`daemon.state_url`).

`open_store` takes either; `is_database_url` tells them apart. A URL may carry a
password (the config reads it from `env:` or `file:`), so every message shows it
through `redact`, never as given.
"""

from __future__ import annotations

import os
from typing import Final

from crmsync.urls import mask_password, password_of

__all__ = ["URL_SCHEMES", "is_database_url", "password_of", "redact"]

URL_SCHEMES: Final = ("postgresql://", "postgres://")


def is_database_url(location: str | os.PathLike[str]) -> bool:
    """Whether `location` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(location, str) and location.lower().startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """`url` with its password replaced by `***` (`crmsync.urls.mask_password`)."""
    return mask_password(url)
