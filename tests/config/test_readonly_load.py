"""Loading the config without its secrets, as the read-only commands do.

`status`, `mappings`, `errors` and `inbox` only read the state database, so their load
(`resolve_secrets=False`) must neither need the keys nor read the files they name; a
reference that is malformed is still a config problem, in the same words as the
resolving load's. Whatever would need an unread value fails in one line.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crmsync.config import UnresolvedSecretError, load_config, parse_config, render_config
from crmsync.errors import EXIT_USAGE, ConfigError

QUO_KEY = "sk-SECRET-1234"
CONFIG = """\
[[tenants]]
id = "acme"
crm = "attio"
quo_api_key = "env:ACME_QUO_API_KEY"
crm_api_key = "file:%d/acme-attio"
crm_webhook_secret = "file:/nonexistent/acme-hook"
"""


def problems(text: str, *, resolve_secrets: bool) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "crmsync.toml", {}, resolve_secrets=resolve_secrets)
    return info.value.problems


def test_a_read_only_load_needs_neither_the_environment_nor_the_files() -> None:
    config = parse_config(CONFIG, "crmsync.toml", {}, resolve_secrets=False)
    (tenant,) = config.tenants
    assert tenant.quo_api_key.reference == "env:ACME_QUO_API_KEY"
    assert tenant.crm_api_key.reference == "file:%d/acme-attio"
    assert tenant.crm_webhook_secret is not None
    assert not tenant.quo_api_key.resolved
    assert not tenant.crm_api_key.resolved
    assert not tenant.crm_webhook_secret.resolved
    # The same text, resolved, reports every missing secret (as before).
    assert problems(CONFIG, resolve_secrets=True) == [
        "crmsync.toml: tenants[0].quo_api_key: environment variable ACME_QUO_API_KEY is "
        "not set",
        "crmsync.toml: tenants[0].crm_api_key: file:%d/acme-attio uses %d but "
        "CREDENTIALS_DIRECTORY is not set (systemd sets it for LoadCredential=)",
        "crmsync.toml: tenants[0].crm_webhook_secret: file /nonexistent/acme-hook cannot be "
        "read: No such file or directory",
    ]


@pytest.mark.parametrize(("reference", "message"), [
    (QUO_KEY, "secrets must be 'env:NAME' or 'file:PATH', not inline values"),
    ("env:not a name", "'env:' must be followed by an environment variable name"),
    ("file:", "'file:' must be followed by a path"),
])
def test_a_malformed_reference_is_reported_alike_either_way(reference: str, message: str) -> None:
    text = CONFIG.replace('"env:ACME_QUO_API_KEY"', f'"{reference}"')
    expected = f"crmsync.toml: tenants[0].quo_api_key: {message}"
    assert problems(text, resolve_secrets=False) == [expected]
    assert expected in problems(text, resolve_secrets=True)
    assert not any(QUO_KEY in line for line in problems(text, resolve_secrets=False))


def test_an_unread_secret_refuses_its_value_in_one_line() -> None:
    config = parse_config(CONFIG, "crmsync.toml", {}, resolve_secrets=False)
    with pytest.raises(UnresolvedSecretError) as info:
        config.tenants[0].quo_api_key.reveal()
    assert info.value.lines() == [
        "secret env:ACME_QUO_API_KEY was not read: this command loaded the config without "
        "its secrets (read-only)"
    ]
    assert info.value.exit_code == EXIT_USAGE


def test_render_marks_unread_secrets_and_resolved_ones_by_length() -> None:
    unread = render_config(parse_config(CONFIG, "crmsync.toml", {}, resolve_secrets=False))
    assert 'quo_api_key = "env:ACME_QUO_API_KEY"  # not read' in unread
    text = CONFIG.replace('"file:%d/acme-attio"', '"env:ACME_QUO_API_KEY"').replace(
        'crm_webhook_secret = "file:/nonexistent/acme-hook"\n', "")
    resolved = render_config(parse_config(text, "crmsync.toml", {"ACME_QUO_API_KEY": QUO_KEY}))
    assert f'quo_api_key = "env:ACME_QUO_API_KEY"  # resolved, {len(QUO_KEY)} chars' in resolved
    assert QUO_KEY not in unread + resolved


def test_load_config_passes_the_choice_on(tmp_path: Path) -> None:
    path = tmp_path / "crmsync.toml"
    path.write_text(CONFIG)
    assert not load_config(path, {}, resolve_secrets=False).tenants[0].quo_api_key.resolved
    with pytest.raises(ConfigError):
        load_config(path, {})
