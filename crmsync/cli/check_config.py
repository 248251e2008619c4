"""`crmsync check-config`: validate the config and print it normalised, secrets masked.

Problems surface as a `ConfigError`, which `crmsync.cli.main` prints one line
each before exiting 2.
"""

from __future__ import annotations

import argparse
import sys

from crmsync.config import load_config, render_config
from crmsync.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the common `-c/--config`."""


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    sys.stdout.write(render_config(config))
    return EXIT_OK
