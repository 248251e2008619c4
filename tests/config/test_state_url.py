"""`daemon.state_url` (INTERFACE §10): PostgreSQL instead of `state_path`, exactly one of
the two, a bad URL is one problem naming the key, and its password never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from crmsync.config import Config, StateUrl, load_config, parse_config, render_config
from crmsync.daemon.reload import plan_reload
from crmsync.errors import ConfigError

PASSWORD = "db-S3CRET-77aa"
URL = f"postgresql://crmsync:{PASSWORD}@db.internal:5432/crmsync"
ENV = {"CRMSYNC_STATE_URL": URL, "OTHER_URL": "postgresql://crmsync@other/crmsync"}


def daemon(*lines: str) -> str:
    return "[daemon]\n" + "".join(f"{line}\n" for line in lines)


def problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "crmsync.toml", ENV if environ is None else environ)
    for line in info.value.problems:
        assert PASSWORD not in line
    return info.value.problems


def test_without_state_url_the_state_is_the_sqlite_file() -> None:
    config = parse_config(daemon('state_path = "/var/lib/crmsync/crmsync.db"'), "c", {})
    assert config.daemon.state_url is None
    assert config.daemon.state_location == "/var/lib/crmsync/crmsync.db"
    assert Config().daemon.state_location == "./crmsync.db"


def test_a_url_without_a_password_is_written_as_it_is() -> None:
    url = "postgresql://crmsync@db.internal/crmsync?sslmode=require"
    config = parse_config(daemon(f'state_url = "{url}"'), "crmsync.toml", {})
    assert config.daemon.state_url == StateUrl(url)
    assert config.daemon.state_location == url
    rendered = render_config(config)
    assert f'state_url = "{url}"\n' in rendered
    assert "# state_path is not used: state_url is set\n" in rendered
    assert parse_config(rendered, "rendered", {}) == config


@pytest.mark.parametrize("reference", ["env:CRMSYNC_STATE_URL", "file:{dir}/state-url"])
def test_a_url_with_a_password_comes_by_reference_and_shows_masked(
    reference: str, tmp_path: Path
) -> None:
    (tmp_path / "state-url").write_text(URL + "\n")
    reference = reference.format(dir=tmp_path)
    config = parse_config(daemon(f'state_url = "{reference}"'), "crmsync.toml", ENV)
    assert config.daemon.state_location == URL  # what the store connects with
    assert config.daemon.state_url is not None
    assert config.daemon.state_url.reference == reference
    rendered = render_config(config)
    assert (f'state_url = "{reference}"  # '
            "postgresql://crmsync:***@db.internal:5432/crmsync\n") in rendered
    for shown in (rendered, repr(config), str(config.daemon.state_url)):
        assert PASSWORD not in shown
    assert parse_config(rendered, "rendered", ENV) == config


def test_the_read_only_commands_still_resolve_it(tmp_path: Path) -> None:
    """`status` and friends skip the API keys, not the state: they read it."""
    path = tmp_path / "crmsync.toml"
    path.write_text(daemon('state_url = "env:CRMSYNC_STATE_URL"')
                    + '[[tenants]]\nid = "acme"\ncrm = "attio"\n'
                    'quo_api_key = "env:QUO"\ncrm_api_key = "env:CRM"\n')
    config = load_config(path, ENV, resolve_secrets=False)
    assert config.daemon.state_location == URL
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, resolve_secrets=False)
    assert info.value.problems == [
        f"{path}: daemon.state_url: environment variable CRMSYNC_STATE_URL is not set"
    ]


FORM = "(postgresql://USER@HOST[:PORT]/DATABASE)"


@pytest.mark.parametrize(("value", "expected"), [
    (f"postgresql://crmsync:{PASSWORD}@db/crmsync",
     "must not hold a password inline: put the whole URL in env:NAME or file:PATH, or the "
     "password in PGPASSWORD or ~/.pgpass (got 'postgresql://crmsync:***@db/crmsync')"),
    (f"postgresql://crmsync@db/crmsync?password={PASSWORD}",
     "must not hold a password inline: put the whole URL in env:NAME or file:PATH, or the "
     "password in PGPASSWORD or ~/.pgpass (got 'postgresql://crmsync@db/crmsync?password=***')"),
    (f"mysql://crmsync:{PASSWORD}@db/crmsync",
     f"must be a PostgreSQL URL {FORM}, got 'mysql://crmsync:***@db/crmsync'"),
    ("postgresql://db:port/crmsync", "has an invalid host or port: 'postgresql://db:port/crmsync'"),
    ("postgresql://db:0/crmsync", "has an invalid port: 'postgresql://db:0/crmsync'"),
    ("postgresql://db/crm sync",
     "must be one URL without spaces or control characters, got 'postgresql://db/crm sync'"),
    (PASSWORD, f"must be a PostgreSQL URL {FORM} or env:NAME / file:PATH holding one"),
    ("env:NOT_SET", "environment variable NOT_SET is not set"),
    ("env:BAD",
     f"env:BAD: the URL there must be a PostgreSQL URL {FORM}, got 'mysql://u:***@db/x'"),
    # Regression (found by tests/config/test_fuzz.py): a reference holding no URL at all,
    # a password pasted on its own, was echoed in the message.
    ("env:BARE", f"env:BARE: the URL there must be a PostgreSQL URL {FORM}, and this is "
                 "not a URL"),
])
def test_a_bad_state_url_is_one_problem_naming_the_key(value: str, expected: str) -> None:
    env = ENV | {"BAD": f"mysql://u:{PASSWORD}@db/x", "BARE": PASSWORD}
    assert problems(daemon(f'state_url = "{value}"'), env) == [
        f"crmsync.toml: daemon.state_url: {expected}"
    ]


def test_state_url_is_a_string() -> None:
    assert problems(daemon("state_url = 5")) == [
        "crmsync.toml: daemon.state_url: expected a string, got an integer"
    ]


def test_state_path_and_state_url_exclude_each_other() -> None:
    assert problems(daemon('state_path = "x.db"', 'state_url = "env:CRMSYNC_STATE_URL"')) == [
        "crmsync.toml: daemon.state_url: set either state_path (a SQLite file) or state_url "
        "(PostgreSQL), not both"
    ]


def test_a_reload_does_not_move_the_state() -> None:
    """Like `state_path`, `state_url` is bound at start: a SIGHUP that changes it is
    reported as needing a restart, and the daemon keeps the database it has open."""
    old = parse_config(daemon('state_url = "env:CRMSYNC_STATE_URL"'), "c", ENV)
    new = parse_config(daemon('state_url = "env:OTHER_URL"'), "c", ENV)
    plan = plan_reload(old, new)
    assert plan.needs_restart == ["daemon.state_url"]
    assert plan.effective.daemon.state_url == old.daemon.state_url
