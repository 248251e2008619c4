"""Finding, reading and parsing the config file into a `Config` (INTERFACE §2, §3).

Parse and apply are separate (STYLE rule 7): `parse_config` only returns a
new `Config` or raises `ConfigError`, so a SIGHUP reload can keep the old one.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

import msgspec

from crmsync.config.model import Config
from crmsync.config.validate import validate
from crmsync.errors import ConfigError

DEFAULT_PATH = "crmsync.toml"
ENV_VAR = "CRMSYNC_CONFIG"


def parse_config(
    text: str,
    source_name: str,
    environ: Mapping[str, str] | None = None,
    *,
    resolve_secrets: bool = True,
) -> Config:
    """Decode and validate TOML text; `source_name` prefixes every problem line.

    Secrets are resolved from `environ` (default `os.environ`) and the files
    they name; every problem is reported in one `ConfigError`. With
    `resolve_secrets=False` (the read-only commands) only their form is checked and
    they stay unresolved, so a config whose keys are not at hand still loads.
    """
    env = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{source_name}: invalid TOML: {exc}"]) from None
    except ValueError:
        # tomllib lets int() refuse a number of more than 4300 digits.
        raise ConfigError([f"{source_name}: invalid TOML: a number is too long"]) from None
    except RecursionError:
        # tomllib recurses once per level of nested arrays and inline tables.
        raise ConfigError([f"{source_name}: invalid TOML: nested too deeply"]) from None
    data, problems = validate(raw, env, resolve_secrets=resolve_secrets)
    if problems:
        raise ConfigError([f"{source_name}: {path}: {message}" for path, message in problems])
    # The walker checked what msgspec checks; converting still goes through
    # msgspec so the Structs are built (and int seconds become floats) one way.
    return msgspec.convert(data, Config)


def load_config(
    path: str | os.PathLike[str] | None,
    environ: Mapping[str, str] | None = None,
    *,
    resolve_secrets: bool = True,
) -> Config:
    """Load the config from `path`, or when None from ./crmsync.toml, then $CRMSYNC_CONFIG.

    `resolve_secrets=False`: see `parse_config`; the commands that only read the state
    (`status`, `mappings`, `errors`, `inbox`) load it that way.
    """
    env = os.environ if environ is None else environ
    source = _locate(env) if path is None else os.fspath(path)
    try:
        data = Path(source).read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError([f"{source}: cannot read config file: {reason}"]) from None
    try:
        # utf-8-sig: editors on Windows like to start files with a BOM.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError([f"{source}: config file is not UTF-8 text (line {line})"]) from None
    return parse_config(text, source, env, resolve_secrets=resolve_secrets)


def _locate(environ: Mapping[str, str]) -> str:
    if Path(DEFAULT_PATH).exists():
        return DEFAULT_PATH
    if from_env := environ.get(ENV_VAR):
        return from_env
    raise ConfigError([f"no config file: pass -c PATH, create ./{DEFAULT_PATH} or set {ENV_VAR}"])
