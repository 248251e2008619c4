"""`crmsync check-config` run for real, in a subprocess with a controlled environment.

Checks the user-facing contract (INTERFACE §2): exit 0 with the normalised,
masked config on stdout; exit 2 with one `<file>: <key path>: <message>` line
per problem on stderr; never a traceback, never a secret value.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
QUO_KEY = "sk-SECRET-1234"
ATTIO_KEY = "attio-SECRET-5678"
SECRETS = (QUO_KEY, ATTIO_KEY)

TENANT = """\
[[tenants]]
id = "acme"
crm = "attio"
quo_api_key = "env:ACME_QUO_API_KEY"
crm_api_key = "env:ACME_ATTIO_API_KEY"
"""


def check_config(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m crmsync check-config ARGS` from `cwd`, with only the env given."""
    base = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO_ROOT),  # the checkout under test, whatever is installed
        "ACME_QUO_API_KEY": QUO_KEY,
        "ACME_ATTIO_API_KEY": ATTIO_KEY,
    }
    result = subprocess.run(
        [sys.executable, "-m", "crmsync", "check-config", *args],
        cwd=cwd,
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "Traceback" not in output
    for secret in SECRETS:
        assert secret not in output
    return result


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "crmsync.toml"
    path.write_text(text)
    return str(path)


def test_good_config_prints_normalised_and_masked(tmp_path: Path) -> None:
    result = check_config(tmp_path, "-c", write(tmp_path, TENANT))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert f'quo_api_key = "env:ACME_QUO_API_KEY"  # resolved, {len(QUO_KEY)} chars' in (
        result.stdout
    )
    assert "requests_per_second = 10" in result.stdout  # defaults are filled in


def test_example_config_validates(tmp_path: Path) -> None:
    result = check_config(tmp_path, "-c", str(REPO_ROOT / "crmsync.toml"))
    assert result.returncode == 0, result.stderr
    assert 'id = "acme"' in result.stdout


def test_file_secret_from_credentials_directory(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "acme-quo").write_text(QUO_KEY + "\n")
    config = write(tmp_path, TENANT.replace("env:ACME_QUO_API_KEY", "file:%d/acme-quo"))
    env = {"ACME_QUO_API_KEY": "", "CREDENTIALS_DIRECTORY": str(credentials)}
    result = check_config(tmp_path, "-c", config, env=env)
    assert result.returncode == 0, result.stderr
    assert f'quo_api_key = "file:%d/acme-quo"  # resolved, {len(QUO_KEY)} chars' in result.stdout


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
def test_bad_config_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, text: str, expected: str
) -> None:
    config = write(tmp_path, text)
    result = check_config(tmp_path, "-c", config)
    assert result.returncode == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{config}: {expected}")


def test_every_problem_is_listed(tmp_path: Path) -> None:
    bad_tenant = TENANT.replace('"attio"', '"atio"').replace("env:ACME_QUO_API_KEY", QUO_KEY)
    text = '[daemon]\nlog_format = "yaml"\n[http]\nport = -1\n[quo]\nrps = 5\n' + bad_tenant
    config = write(tmp_path, text)
    result = check_config(tmp_path, "-c", config)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{config}: daemon.log_format: must be one of: json, text, got 'yaml'",
        f"{config}: http.port: must be between 0 and 65535, got -1",
        f"{config}: quo.rps: unknown key",
        f"{config}: tenants[0].crm: unknown CRM 'atio' (expected one of: attio, pipedrive, "
        "hubspot)",
        f"{config}: tenants[0].quo_api_key: secrets must be 'env:NAME' or 'file:PATH', "
        "not inline values",
    ]


def test_missing_config_file(tmp_path: Path) -> None:
    result = check_config(tmp_path, "-c", "missing.toml")
    assert result.returncode == 2
    assert result.stderr == "missing.toml: cannot read config file: No such file or directory\n"


def test_config_found_through_environment(tmp_path: Path) -> None:
    config = tmp_path / "etc" / "crmsync.toml"
    config.parent.mkdir()
    config.write_text(TENANT)
    result = check_config(tmp_path, env={"CRMSYNC_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    none = check_config(tmp_path)
    assert none.returncode == 2
    assert none.stderr == (
        "no config file: pass -c PATH, create ./crmsync.toml or set CRMSYNC_CONFIG\n"
    )
