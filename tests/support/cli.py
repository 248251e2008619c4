"""The real CLI in a subprocess, one way for every test: `python -m crmsync ARGS`.

`run_cli` runs it to completion and returns a `Result` (`code`, `out`, `err`,
`describe()`), after checking what must never show: a traceback, a never-awaited
coroutine, an API key. A child still running after `within` seconds is killed and the
test fails with its output. `spawn_cli` only starts it (a daemon, a sync to be killed);
the caller owns that process.

The `cli` fixture (tests/conftest.py) is `cli_runner(tmp_path)`: the CLI run from
`tmp_path` with `-c tmp_path/crmsync.toml` (written by `write_config`) and test keys in
its environment.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

REPO_ROOT = Path(__file__).resolve().parents[2]
T0 = 1795428000.0  # 2026-11-23T10:00:00Z
SECRET = "sk-SECRET-1234"
CRM_SECRET = "crm-SECRET-5678"
ATTIO_SECRET = "attio-SECRET-5678"

#: The keys the `cli` fixture puts in the child's environment (configs name them
#: `env:QUO_KEY`, `env:ACME_QUO_API_KEY`, ...); none may ever show in its output.
CLI_KEYS = {
    "QUO_KEY": SECRET,
    "CRM_KEY": CRM_SECRET,
    "ACME_QUO_API_KEY": SECRET,
    "ACME_ATTIO_API_KEY": ATTIO_SECRET,
}
SECRETS = (SECRET, CRM_SECRET, ATTIO_SECRET)

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


@dataclass(frozen=True)
class Result:
    """A finished CLI run: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def describe(self) -> str:
        return f"exit {self.code}\n--- stdout ---\n{self.out}\n--- stderr ---\n{self.err}"


def write_config(tmp_path: Path, template: str = TWO_ATTIO_TENANTS) -> Path:
    """crmsync.toml in tmp_path; returns the state database path it names."""
    path = tmp_path / "crmsync.db"
    (tmp_path / "crmsync.toml").write_text(template.format(state=path))
    return path


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ours minus CRMSYNC_CONFIG and PYTHONASYNCIODEBUG, the
    checkout under test first on PYTHONPATH, then `extra`.

    The CLI runs as in production (no asyncio debug mode: its per-callback tracebacks
    would only slow the child and, on a small machine, the simulators with it).
    """
    dropped = {"CRMSYNC_CONFIG", "PYTHONASYNCIODEBUG"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    env.update(extra or {})
    return env


async def spawn_cli(
    *args: str, env: Mapping[str, str], cwd: Path | None = None
) -> asyncio.subprocess.Process:
    """Start `python -m crmsync ARGS` with piped output; the caller owns the process."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "crmsync", *args,
        env=dict(env), cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    within: float = 60.0,
    secrets: Iterable[str] = (),
) -> Result:
    """Run `python -m crmsync ARGS` to completion (killed after `within` s).

    `env` is the child's whole environment (default `cli_env()`). Every run is checked:
    no "Traceback", no "never awaited", and neither `secrets` nor any value of `env`
    containing "SECRET" (every test key does) in the output.
    """
    env = cli_env() if env is None else env
    process = await spawn_cli(*args, env=env, cwd=cwd)
    try:
        async with asyncio.timeout(within):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        out, err = await process.communicate()
        raise AssertionError(
            f"crmsync {' '.join(args)} did not finish within {within} s\n"
            f"--- stdout ---\n{out.decode()}\n--- stderr ---\n{err.decode()}"
        ) from None
    finally:
        if process.returncode is None:  # cancelled (test timeout): never leak the child
            process.kill()
            await process.wait()
    assert process.returncode is not None
    result = Result(process.returncode, out.decode(), err.decode())
    output = result.out + result.err
    assert "Traceback" not in output, result.describe()
    assert "never awaited" not in result.err, result.describe()
    for secret in {*secrets, *(v for v in env.values() if "SECRET" in v)}:
        assert secret not in output, "an API key leaked into the CLI's output"
    return result


class Cli(Protocol):
    """What the `cli` fixture returns (see `cli_runner`)."""

    def __call__(
        self,
        *args: str,
        config: Path | None = ...,
        env: Mapping[str, str] | None = None,
        within: float = 60.0,
    ) -> Awaitable[Result]: ...


def cli_runner(tmp_path: Path) -> Cli:
    """`await cli(ARGS)`: `run_cli` from `tmp_path` with `-c tmp_path/crmsync.toml`
    appended (`config=` another file, or None for no `-c`), `CLI_KEYS` and COLUMNS=200
    in the environment, plus `env`."""
    default_config = tmp_path / "crmsync.toml"

    async def cli(
        *args: str,
        config: Path | None = default_config,
        env: Mapping[str, str] | None = None,
        within: float = 60.0,
    ) -> Result:
        config_args = () if config is None else ("-c", str(config))
        return await run_cli(
            *args, *config_args,
            env=cli_env({**CLI_KEYS, "COLUMNS": "200", **(env or {})}),
            cwd=tmp_path, within=within, secrets=SECRETS,
        )

    return cli


def summary_value(output: str, label: str) -> str:
    """A row's value in `crmsync demo`'s summary table."""
    match = re.search(rf"│ {re.escape(label)}\s*│\s*(\S+(?: s)?)\s*│", output)
    assert match, f"no '{label}' row in the summary:\n{output}"
    return match.group(1)
