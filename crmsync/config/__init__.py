"""The crmsync config: typed Structs decoded from TOML, with every problem reported at once.

`load_config` finds and reads the file; `parse_config` is the pure part (also
used by SIGHUP reload); `render_config` prints it back with secrets masked.
"""

from crmsync.config.loader import load_config, parse_config
from crmsync.config.model import (
    Config,
    DaemonConfig,
    HttpConfig,
    MetakockaConfig,
    QuoConfig,
    TenantConfig,
)
from crmsync.config.render import render_config
from crmsync.config.secret import Secret, UnresolvedSecretError
from crmsync.config.state_url import StateUrl

__all__ = [
    "Config",
    "DaemonConfig",
    "HttpConfig",
    "MetakockaConfig",
    "QuoConfig",
    "Secret",
    "StateUrl",
    "TenantConfig",
    "UnresolvedSecretError",
    "load_config",
    "parse_config",
    "render_config",
]
