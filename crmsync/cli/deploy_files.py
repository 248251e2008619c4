"""`crmsync deploy-files DIR [--force]`: write out the deployment files the package ships.

The systemd unit, the production config example, `crmsyncctl`, the Prometheus scrape
config, the alert rules with their unit tests and the Grafana dashboard are package
data (`crmsync/deploy_files/`, the one copy in the source tree): an install from a
wheel has them without a checkout, at the version that is installed. This command
copies them into DIR, keeping their layout, and says where each one goes
(`deploy/README.md`, "Install", has the steps). It never overwrites a file unless
`--force`: DIR may be where an operator already edited them.

The unit's `ExecStart=` names `/opt/crmsync/venv/bin/crmsync`, the install path of
the README; the command says whether that is the crmsync running it, since
`systemd-analyze verify` and systemd itself refuse a unit whose binary is missing.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from crmsync import __version__
from crmsync.errors import EXIT_OK, UsageError

#: the package directory that holds them
PACKAGE_DIR = "deploy_files"
#: every file shipped, with where it goes (a test checks the list against the directory)
FILES: tuple[tuple[str, str], ...] = (
    ("crmsync.service", "systemd unit (/etc/systemd/system/)"),
    ("crmsync.toml.example", "config (/etc/crmsync/crmsync.toml)"),
    ("crmsyncctl", "the CLI for root (/usr/local/sbin/)"),
    ("prometheus/prometheus.yml", "scrape job (merge into yours)"),
    ("prometheus/crmsync.rules.yml", "alert rules (/etc/prometheus/)"),
    ("prometheus/crmsync.rules.test.yml", "their tests (promtool test rules)"),
    ("grafana/crmsync.json", "dashboard (import into Grafana)"),
    ("replicas/replica.conf", "crmsync@.service drop-in (replicas)"),
    ("replicas/nginx.conf", "proxy for the replicas (nginx)"),
)
EXECUTABLES = frozenset({"crmsyncctl"})
#: what the shipped unit's ExecStart= runs (deploy/README.md installs it there)
UNIT_BINARY = "/opt/crmsync/venv/bin/crmsync"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="directory to write them to (created)")
    parser.add_argument("--force", action="store_true", help="overwrite files already there")


def shipped(name: str) -> Traversable:
    """The packaged file `name` (`prometheus/crmsync.rules.yml`)."""
    found = resources.files("crmsync").joinpath(PACKAGE_DIR)
    for part in name.split("/"):
        found = found.joinpath(part)
    return found


def write_files(target: Path, *, force: bool) -> list[Path]:
    """Copy every shipped file under `target`; `UsageError` naming the files already
    there (nothing written) unless `force`."""
    paths = [target / name for name, _ in FILES]
    existing = [name for (name, _), path in zip(FILES, paths, strict=True) if path.exists()]
    if existing and not force:
        raise UsageError(
            f"deploy-files: {target} already has {', '.join(existing)}; pass --force to "
            "overwrite"
        )
    for (name, _), path in zip(FILES, paths, strict=True):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(shipped(name).read_bytes())
            path.chmod(0o755 if name in EXECUTABLES else 0o644)
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise UsageError(f"deploy-files: cannot write {path}: {reason}") from None
    return paths


def this_binary() -> Path | None:
    """The console script of the crmsync running this, when it is beside its Python."""
    candidate = Path(sys.executable).with_name("crmsync")
    return candidate if candidate.is_file() else None


def run(args: argparse.Namespace) -> int:
    target = Path(args.dir)
    write_files(target, force=args.force)
    width = max(len(name) for name, _ in FILES)
    print(f"Wrote the deployment files of crmsync {__version__} to {target}:")
    for name, purpose in FILES:
        print(f"  {name:<{width}}  {purpose}")
    binary = this_binary()
    if binary is not None and str(binary) == UNIT_BINARY:
        note = f"crmsync.service runs {UNIT_BINARY}, this crmsync."
    else:
        here = "" if binary is None else f"; this crmsync is {binary}"
        note = (f"crmsync.service runs {UNIT_BINARY}{here}: install crmsync there, or "
                "change ExecStart= in crmsync.service and CRMSYNC_BIN in crmsyncctl.")
    # Broken at spaces only: a path split across lines would not paste.
    print(textwrap.fill(note, width=80, break_long_words=False, break_on_hyphens=False))
    print('The steps: deploy/README.md in the crmsync source, "Install".')
    return EXIT_OK
