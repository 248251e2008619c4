"""Shared by the CLI tests: a two-tenant config, and the real CLI in a subprocess."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
T0 = 1795428000.0  # 2026-11-23T10:00:00Z
SECRET = "sk-SECRET-1234"

TWO_ATTIO_TENANTS = """\
[daemon]
state_path = "{state}"

[[tenants]]
id = "acme"
crm = "attio"
quo_api_key = "env:QUO_KEY"
crm_api_key = "env:CRM_KEY"

[[tenants]]
id = "beta"
crm = "attio"
quo_api_key = "env:QUO_KEY"
crm_api_key = "env:CRM_KEY"
"""


@dataclass
class Result:
    code: int
    out: str
    err: str


def write_config(tmp_path: Path, template: str = TWO_ATTIO_TENANTS) -> Path:
    """crmsync.toml in tmp_path; returns the state database path it names."""
    path = tmp_path / "crmsync.db"
    (tmp_path / "crmsync.toml").write_text(template.format(state=path))
    return path


async def cli(
    tmp_path: Path,
    *args: str,
    extra_env: Mapping[str, str] | None = None,
    pythonpath: list[str] | None = None,
) -> Result:
    """`python -m crmsync ARGS -c crmsync.toml`, with only the environment it needs.

    Every run is also checked for what must never show: a traceback, the API key.
    """
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([*(pythonpath or []), str(REPO_ROOT)]),
        "QUO_KEY": SECRET,
        "CRM_KEY": "crm-SECRET-5678",
        "COLUMNS": "200",
        **(extra_env or {}),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crmsync", *args, "-c", str(tmp_path / "crmsync.toml"),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    result = Result(await process.wait(), out.decode(), err.decode())
    assert "Traceback" not in result.out + result.err
    assert SECRET not in result.out + result.err
    return result
