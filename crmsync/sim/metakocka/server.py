"""Running the simulator on a real socket: for tests (`run_metakocka_simulator`) and the CLI.

Both go through the shared harness in `_kit.server`; only the URL path and the banner
are Metakocka's own.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from crmsync.sim._kit.server import run_sim, serve_forever
from crmsync.sim.metakocka.app import create_metakocka_app
from crmsync.sim.metakocka.config import MetakockaSimConfig
from crmsync.sim.metakocka.partners import API_PATH
from crmsync.sim.metakocka.state import METAKOCKA_SIM_KEY, MetakockaSim


def run_metakocka_simulator(
    host: str = "127.0.0.1", port: int = 0, config: MetakockaSimConfig | None = None
) -> AbstractAsyncContextManager[tuple[MetakockaSim, str]]:
    """Serve a simulator; yields `(sim, "http://HOST:PORT/rest/eshop/v1")`, stops it on exit."""
    return run_sim(create_metakocka_app(config), METAKOCKA_SIM_KEY, host, port, path=API_PATH)


def _banner(running: tuple[MetakockaSim, str]) -> list[str]:
    sim, base_url = running
    lines = [f"Metakocka simulator: {base_url}"]
    for company in sim.companies.values():
        lines.append(
            f"company_id {company.company_id}, secret_key {company.secret_key}: "
            f"{len(company.partners)} partners, {len(company.documents)} documents"
        )
    root = base_url.removesuffix(API_PATH)
    lines.append(f"seed {sim.config.seed}; admin routes under {root}/_sim/")
    return lines


async def serve_metakocka_simulator_forever(
    host: str = "127.0.0.1", port: int = 0, config: MetakockaSimConfig | None = None
) -> None:
    """For `crmsync sim metakocka`: print the URL and credentials once bound, serve on."""
    await serve_forever(run_metakocka_simulator(host, port, config), _banner)
