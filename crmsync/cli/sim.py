"""`crmsync sim quo|attio [--port P] [--people N]`: run one simulator alone, in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from crmsync.errors import EXIT_OK


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("api", choices=["quo"], help="which API to simulate")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", metavar="KEY",
        help="accepted API key (repeatable; default 'test-key')",
    )
    parser.add_argument(
        "--rps", type=int, default=10, help="requests per second per key (default 10)"
    )


def run(args: argparse.Namespace) -> int:
    from crmsync.sim.quo import QuoSimConfig, serve_quo_simulator_forever

    config = QuoSimConfig(
        api_keys=args.api_keys or ["test-key"], requests_per_second=args.rps
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_quo_simulator_forever(args.host, args.port, config))
    return EXIT_OK
