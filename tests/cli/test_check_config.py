"""`crmsync check-config` run for real, in a subprocess with a controlled environment.

Checks the user-facing contract (INTERFACE §2): exit 0 with the normalised,
masked config on stdout; exit 2 with one `<file>: <key path>: <message>` line
per problem on stderr; never a traceback, never a secret value.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.cli import CLI_KEYS, REPO_ROOT, Cli, Result

QUO_KEY = CLI_KEYS["ACME_QUO_API_KEY"]
ATTIO_KEY = CLI_KEYS["ACME_ATTIO_API_KEY"]

TENANT = """\
[[tenants]]
id = "acme"
crm = "attio"
quo_api_key = "env:ACME_QUO_API_KEY"
crm_api_key = "env:ACME_ATTIO_API_KEY"
"""


async def check_config(cli: Cli, *args: str, env: dict[str, str] | None = None) -> Result:
    """Run `crmsync check-config ARGS` from tmp_path, the keys above in the environment
    (the `cli` fixture: never a traceback, never a secret in the output)."""
    return await cli("check-config", *args, config=None, env=env)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "crmsync.toml"
    path.write_text(text)
    return str(path)


async def test_good_config_prints_normalised_and_masked(cli: Cli, tmp_path: Path) -> None:
    result = await check_config(cli, "-c", write(tmp_path, TENANT))
    assert result.code == 0, result.err
    assert result.err == ""
    assert f'quo_api_key = "env:ACME_QUO_API_KEY"  # resolved, {len(QUO_KEY)} chars' in (
        result.out
    )
    assert "requests_per_second = 10" in result.out  # defaults are filled in


async def test_a_hubspot_tenant_without_its_webhook_secret_gets_a_note(
    cli: Cli, tmp_path: Path
) -> None:
    """Valid (exit 0), but its CRM changes can only arrive by polling: stderr says so;
    with the secret set, no note."""
    hubspot = TENANT.replace('crm = "attio"', 'crm = "hubspot"')
    without = await check_config(cli, "-c", write(tmp_path, hubspot))
    assert without.code == 0, without.err
    assert without.err.startswith("note: tenants[0] (acme): hubspot webhooks are set up in "
                                  "hubspot"), without.err
    assert "polling only" in without.err

    with_secret = hubspot + 'crm_webhook_secret = "env:ACME_ATTIO_API_KEY"\n'
    result = await check_config(cli, "-c", write(tmp_path, with_secret))
    assert (result.code, result.err) == (0, "")


async def test_example_config_validates(cli: Cli) -> None:
    result = await check_config(cli, "-c", str(REPO_ROOT / "crmsync.toml"))
    assert result.code == 0, result.err
    assert 'id = "acme"' in result.out


async def test_file_secret_from_credentials_directory(cli: Cli, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "acme-quo").write_text(QUO_KEY + "\n")
    config = write(tmp_path, TENANT.replace("env:ACME_QUO_API_KEY", "file:%d/acme-quo"))
    env = {"ACME_QUO_API_KEY": "", "CREDENTIALS_DIRECTORY": str(credentials)}
    result = await check_config(cli, "-c", config, env=env)
    assert result.code == 0, result.err
    assert f'quo_api_key = "file:%d/acme-quo"  # resolved, {len(QUO_KEY)} chars' in result.out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("[quo\n", "invalid TOML: ", id="toml-syntax"),
        pytest.param("[quo]\nrps = 5\n", "quo.rps: unknown key", id="unknown-key"),
        pytest.param(
            '[http]\nport = "8787"\n',
            "http.port: expected an integer, got a string",
            id="wrong-type",
        ),
        pytest.param(
            "[quo]\nrequests_per_second = 0\n",
            "quo.requests_per_second: must be between 1 and 1000, got 0",
            id="out-of-range",
        ),
        pytest.param(
            TENANT.replace('"acme"', '"ACME"'),
            "tenants[0].id: invalid tenant id 'ACME'",
            id="bad-tenant-id",
        ),
        pytest.param(
            TENANT * 2,
            "tenants[1].id: duplicate tenant id 'acme' (also tenants[0])",
            id="duplicate-tenant-id",
        ),
        pytest.param(
            TENANT.replace('"attio"', '"atio"'),
            "tenants[0].crm: unknown CRM 'atio' (expected one of: attio, pipedrive, hubspot)",
            id="unknown-crm",
        ),
        pytest.param(
            TENANT.replace("env:ACME_QUO_API_KEY", QUO_KEY),
            "tenants[0].quo_api_key: secrets must be 'env:NAME' or 'file:PATH', not inline values",
            id="inline-secret",
        ),
        pytest.param(
            TENANT.replace("ACME_QUO_API_KEY", "UNSET_QUO_KEY"),
            "tenants[0].quo_api_key: environment variable UNSET_QUO_KEY is not set",
            id="env-missing",
        ),
        pytest.param(
            TENANT.replace("env:ACME_QUO_API_KEY", "file:/nonexistent/acme-quo"),
            "tenants[0].quo_api_key: file /nonexistent/acme-quo cannot be read: "
            "No such file or directory",
            id="file-unreadable",
        ),
    ],
)
async def test_bad_config_exits_2_with_one_line_naming_the_key(
    cli: Cli, tmp_path: Path, text: str, expected: str
) -> None:
    config = write(tmp_path, text)
    result = await check_config(cli, "-c", config)
    assert result.code == 2
    assert result.out == ""
    [line] = result.err.splitlines()
    assert line.startswith(f"{config}: {expected}")


async def test_every_problem_is_listed(cli: Cli, tmp_path: Path) -> None:
    bad_tenant = TENANT.replace('"attio"', '"atio"').replace("env:ACME_QUO_API_KEY", QUO_KEY)
    text = '[daemon]\nlog_format = "yaml"\n[http]\nport = -1\n[quo]\nrps = 5\n' + bad_tenant
    config = write(tmp_path, text)
    result = await check_config(cli, "-c", config)
    assert result.code == 2
    assert result.err.splitlines() == [
        f"{config}: daemon.log_format: must be one of: json, text, got 'yaml'",
        f"{config}: http.port: must be between 0 and 65535, got -1",
        f"{config}: quo.rps: unknown key",
        f"{config}: tenants[0].crm: unknown CRM 'atio' (expected one of: attio, pipedrive, "
        "hubspot)",
        f"{config}: tenants[0].quo_api_key: secrets must be 'env:NAME' or 'file:PATH', "
        "not inline values",
    ]


async def test_missing_config_file(cli: Cli) -> None:
    result = await check_config(cli, "-c", "missing.toml")
    assert result.code == 2
    assert result.err == "missing.toml: cannot read config file: No such file or directory\n"


async def test_config_found_through_environment(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "etc" / "crmsync.toml"
    config.parent.mkdir()
    config.write_text(TENANT)
    result = await check_config(cli, env={"CRMSYNC_CONFIG": str(config)})
    assert result.code == 0, result.err
    none = await check_config(cli)
    assert none.code == 2
    assert none.err == (
        "no config file: pass -c PATH, create ./crmsync.toml or set CRMSYNC_CONFIG\n"
    )
