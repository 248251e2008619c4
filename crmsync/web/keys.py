"""What the web handlers find on the application, and the JSON answers they give.

The daemon's state reaches the handlers through typed `web.AppKey`s (aiohttp's
`AppKey` keeps `app[KEY]` typed), set once by `build_app`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final

import msgspec
from aiohttp import web

from crmsync.config import Config
from crmsync.store import Store
from crmsync.web.guard import IntakeGuard
from crmsync.web.health import Health
from crmsync.web.targets import WebhookTarget

TargetLookup = Callable[[str], WebhookTarget | None]
ConfigGetter = Callable[[], Config]

TARGETS_KEY: Final[web.AppKey[TargetLookup]] = web.AppKey("crmsync_targets")
STORE_KEY: Final = web.AppKey("crmsync_store", Store)
CONFIG_KEY: Final[web.AppKey[ConfigGetter]] = web.AppKey("crmsync_config")
HEALTH_KEY: Final = web.AppKey("crmsync_health", Health)
MAX_BODY_KEY: Final = web.AppKey("crmsync_max_body_bytes", int)
GUARD_KEY: Final = web.AppKey("crmsync_intake_guard", IntakeGuard)
PENDING_COMMITS_KEY: Final = web.AppKey("crmsync_pending_commits", set[asyncio.Task[Any]])


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(data), status=status, content_type="application/json"
    )


def error_response(status: int, message: str) -> web.Response:
    """Every error is a short JSON `{"error": ...}`."""
    return json_response({"error": message}, status)
