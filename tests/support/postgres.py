"""A throwaway PostgreSQL cluster for the tests, one per test session (per xdist worker).

`PostgresCluster.start()` runs `initdb` into a fresh temp dir and starts `postgres` with
`pg_ctl` on a free 127.0.0.1 port (its unix socket in the same dir), tuned for tests
(fsync off; `synchronous_commit` off too, so a durable commit must ask for it);
`stop()` stops it and deletes the dir. Each test gets its own schema (`new_url()`: a URL
whose `search_path` is that schema), so tests never see each other's tables.

initdb refuses to run as root, so as root (CI) every PostgreSQL binary runs as an
unprivileged user: `postgres` if it exists (Debian's package creates it), else `nobody`;
the temp dir is chowned to it. As a normal user they run as that user.

The binaries are looked up in `$CRMSYNC_PG_BIN`, next to `initdb` on the PATH,
/usr/local/bin and /usr/lib/postgresql/<version>/bin (Debian), newest first.
`find_binaries()` returns None when there are none: the tests skip then, with
`MISSING`, unless `$CRMSYNC_REQUIRE_POSTGRES` is set (CI), where they fail.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

SUPERUSER = "crmsync_test"
DATABASE = "postgres"
MISSING = (
    "PostgreSQL binaries (initdb, pg_ctl, postgres) not found in $CRMSYNC_PG_BIN, PATH, "
    "/usr/local/bin or /usr/lib/postgresql/*/bin: the PostgreSQL store tests are skipped "
    "(Debian: apt-get install postgresql)"
)
#: set (CI): missing binaries fail the PostgreSQL tests instead of skipping them
REQUIRE_ENV = "CRMSYNC_REQUIRE_POSTGRES"
START_TIMEOUT = 60


def _candidates() -> list[Path]:
    dirs: list[Path] = []
    if override := os.environ.get("CRMSYNC_PG_BIN"):
        dirs.append(Path(override))
    if on_path := shutil.which("initdb"):
        dirs.append(Path(on_path).parent)
    dirs.append(Path("/usr/local/bin"))

    def version(path: Path) -> tuple[int, ...]:
        parts = path.parent.name.split(".")
        return tuple(int(p) for p in parts if p.isdigit())

    dirs += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    return dirs


def find_binaries() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None."""
    for directory in _candidates():
        if all(os.access(directory / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RunAs:
    """Who runs the PostgreSQL binaries: ourselves, or (as root) an unprivileged user."""

    uid: int | None = None
    gid: int | None = None
    name: str = ""

    @classmethod
    def choose(cls) -> RunAs:
        if os.geteuid() != 0:
            return cls(name=pwd.getpwuid(os.geteuid()).pw_name)
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
                return cls(uid=entry.pw_uid, gid=entry.pw_gid, name=name)
        raise RuntimeError(
            "running as root, and neither a 'postgres' nor a 'nobody' user exists to run "
            "initdb as (initdb refuses root)"
        )

    def run(self, args: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, user=self.uid, group=self.gid, extra_groups=[] if self.uid else None,
            check=False, capture_output=True, text=True, timeout=START_TIMEOUT,
            env={**os.environ, "LC_ALL": "C"}, **kwargs,
        )

    def own(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)


@dataclass
class PostgresCluster:
    bin_dir: Path
    run_as: RunAs = field(default_factory=RunAs.choose)
    base: Path | None = None
    port: int = 0
    _schemas: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    def admin_url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> None:
        # Not under pytest's tmp dirs: those are 0700 and owned by us, out of reach of
        # the unprivileged user the server runs as when we are root.
        self.base = Path(tempfile.mkdtemp(prefix="crmsync-pg-"))
        self.run_as.own(self.base)
        initdb = self.run_as.run([
            str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
            "--auth=trust", "--no-locale", "--encoding=UTF8", "--no-sync",
        ])
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed (as {self.run_as.name}): {initdb.stderr.strip()}")
        for attempt in range(5):  # a free port may be taken before the server binds it
            self.port = _free_port()
            options = " ".join([
                "-c listen_addresses=127.0.0.1", f"-c port={self.port}",
                f"-c unix_socket_directories={self.base}", "-c fsync=off",
                "-c synchronous_commit=off", "-c full_page_writes=off",
                "-c max_connections=100", "-c shared_buffers=16MB",
            ])
            started = self.run_as.run([
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-o", options,
                "-l", str(self.base / "postgres.log"), "-w", "-t", str(START_TIMEOUT), "start",
            ])
            if started.returncode == 0:
                return
            if attempt == 4:
                log = (self.base / "postgres.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"pg_ctl start failed: {started.stderr.strip()}\n{log}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.base is None:
            return
        if self.data.exists():
            self.run_as.run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data),
                             "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.base, ignore_errors=True)
        self.base = None

    async def new_url(self) -> str:
        """A fresh, empty schema and the URL whose sessions use it."""
        schema = f"t{next(self._schemas)}"
        conn = await asyncpg.connect(self.admin_url())
        try:
            await conn.execute(f"CREATE SCHEMA {schema}")
        finally:
            await conn.close()
        return f"{self.admin_url()}?search_path={schema}"

    async def drop(self, url: str) -> None:
        """Drop the schema `new_url` made (keeps a long session's cluster small)."""
        schema = url.rpartition("search_path=")[2]
        conn = await asyncpg.connect(self.admin_url())
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await conn.close()


# -- for tests/store, whose `backend` fixture runs each test on both engines -------------

#: a fresh state location (the `state` fixture): a SQLite path, or a PostgreSQL URL with
#: a schema of its own
StateFactory = Callable[[str], Awaitable[str | Path]]
#: a test about SQLite itself (its PRAGMAs, its trace, its file): the SQLite case only
sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
#: a test about the PostgreSQL engine itself: the PostgreSQL case only
postgresql_only = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
