"""Logging: one event per line, as JSON or text, with the tenant when there is one.

The tenant and trace id come from `crmsync.log_context` (set once per task), copied
onto each record by the handler's `ContextFilter`.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from crmsync.config import DaemonConfig
from crmsync.log_context import ContextFilter


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("tenant", "trace_id"):
            value = getattr(record, key, None)
            if value is not None:
                event[key] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        tenant = getattr(record, "tenant", None)
        prefix = f"[{tenant}] " if tenant else ""
        line = (f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname:<7} "
                f"{record.name}: {prefix}{record.getMessage()}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(config: DaemonConfig) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if config.log_format == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log_level.upper())
    # aiohttp's access log would log every webhook delivery twice over.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
