"""The normalised config as TOML text, every default filled in, secrets by reference only.

This is what `crmsync check-config` prints. The output parses back to the same
`Config` (given the same environment), so it can be saved as a complete config.
"""

from __future__ import annotations

import json

import msgspec

from crmsync.config.model import Config, DaemonConfig
from crmsync.config.secret import Secret
from crmsync.config.state_url import StateUrl


def render_config(config: Config) -> str:
    """Render `config` as TOML; a secret shows its reference and length, never its value,
    and `state_url` its reference and the URL with the password masked."""
    lines = ["# crmsync config, normalised: defaults filled in, secrets masked"]
    for name in ("daemon", "http", "quo"):
        lines += ["", f"[{name}]", *_table(getattr(config, name))]
    if not config.tenants:
        lines += ["", "# no [[tenants]] configured"]
    for tenant in config.tenants:
        lines += ["", "[[tenants]]", *_table(tenant)]
        if tenant.metakocka is not None:  # a sub-table comes after the tenant's keys
            lines += ["", "[tenants.metakocka]", *_table(tenant.metakocka)]
    return "\n".join(lines) + "\n"


def _table(section: msgspec.Struct) -> list[str]:
    lines = []
    for field in msgspec.structs.fields(section):
        value = getattr(section, field.name)
        if isinstance(value, msgspec.Struct):
            continue  # a sub-table: rendered by the caller after this table's keys
        if isinstance(section, DaemonConfig) and field.name == "state_path" and (
            section.state_url is not None
        ):
            # Both keys would not parse back; state_path is unused anyway.
            lines.append("# state_path is not used: state_url is set")
        elif isinstance(value, StateUrl) and value.reference is not None:
            lines.append(f"{field.name} = {_value(value.reference)}  # {value.masked()}")
        elif isinstance(value, StateUrl):
            lines.append(f"{field.name} = {_value(value.masked())}")
        elif value is None:
            # TOML has no null: an unset optional key is simply absent.
            lines.append(f"# {field.name} is not set")
        elif isinstance(value, Secret) and not value.resolved:
            lines.append(f"{field.name} = {_value(value.reference)}  # not read")
        elif isinstance(value, Secret):
            chars = len(value.reveal())
            lines.append(f"{field.name} = {_value(value.reference)}  # resolved, {chars} chars")
        else:
            lines.append(f"{field.name} = {_value(value)}")
    return lines


def _value(value: object) -> str:
    match value:
        case bool():
            return "true" if value else "false"
        case int() | float():
            return repr(value)
        case str():
            # A JSON string is a TOML basic string, except that TOML also wants DEL escaped.
            return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
        case tuple():
            return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot render {type(value).__name__} as TOML")
