"""`crmsync sim quo|metakocka|attio|pipedrive|hubspot [--port P] [--people N]
[--partners N]`: run one simulator alone, in the foreground (the CRMs' come from
`crmsync.sim.crms`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from crmsync.errors import EXIT_OK
from crmsync.sim.crms import CRM_SIMULATORS, SimOptions, crm_simulator


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("api", choices=["quo", "metakocka", *CRM_SIMULATORS],
                        help="which API to simulate")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", metavar="KEY",
        help="accepted API key (repeatable; default 'test-key' for Quo, '<crm>-test-key' "
        "for a CRM); "
        "Metakocka: the secret key of company 16 (default 'mk-test-key')",
    )
    parser.add_argument(
        "--rps", type=int, default=None,
        help="requests per second per key (default: the API's real limit; Quo 10, Attio "
        "reads 100; "
        "Metakocka: calls per second per company, default 50)",
    )
    parser.add_argument("--people", type=int, default=0, help="a CRM: people to seed")
    parser.add_argument(
        "--partners", type=int, default=0,
        help="Metakocka: partners to seed (and twice as many documents referencing them)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed for generated data")


async def _serve(args: argparse.Namespace) -> None:
    if args.api == "quo":
        from crmsync.sim.quo import QuoSimConfig, serve_quo_simulator_forever

        quo = QuoSimConfig(
            api_keys=args.api_keys or ["test-key"],
            requests_per_second=args.rps or 10,
            seed=args.seed,
        )
        await serve_quo_simulator_forever(args.host, args.port, quo)
        return
    if args.api == "metakocka":
        await _serve_metakocka(args)
        return
    entry = crm_simulator(args.api)
    options = SimOptions(api_keys=args.api_keys or [entry.default_key], people=args.people,
                         seed=args.seed, rate=args.rps)
    await entry.serve_forever(args.host, args.port, options)


async def _serve_metakocka(args: argparse.Namespace) -> None:
    from crmsync.sim.metakocka import (
        CompanyConfig,
        MetakockaSimConfig,
        serve_metakocka_simulator_forever,
    )

    company = CompanyConfig(
        "16",
        (args.api_keys or ["mk-test-key"])[0],
        partners=args.partners,
        documents=2 * args.partners,
        calls_per_window=args.rps or 50,
    )
    config = MetakockaSimConfig(companies=[company], seed=args.seed)
    await serve_metakocka_simulator_forever(args.host, args.port, config)


def run(args: argparse.Namespace) -> int:
    from crmsync.daemon.loop import run_async

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        run_async(_serve(args))
    return EXIT_OK
