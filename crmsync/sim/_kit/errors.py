"""The base of the simulated CRMs' API errors: a status, a message, headers, a JSON body.

Handlers raise a provider's subclass; the gateway (`_kit.gateway.police`) turns it into
the response, so no handler builds an error response by hand. The subclass says what
the body looks like (`body()`), which is all that differs between providers.
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from crmsync.sim._kit.http import json_response


class ApiError(Exception, metaclass=ABCMeta):
    """An API error answer in a provider's JSON shape."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})

    @abstractmethod
    def body(self) -> dict[str, Any]:
        """The JSON body of the answer."""

    def response(self) -> web.Response:
        return json_response(self.body(), status=self.status, headers=self.headers)
