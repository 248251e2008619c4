"""Pipedrive's line in the CRM simulator registry (`crmsync.sim.crms`).

`SimOptions.rate` is requests per second per key; Pipedrive's burst window is 2 s, so the
simulator admits twice that per window.
"""

from __future__ import annotations

from crmsync.sim._kit.entry import crm_entry
from crmsync.sim.pipedrive.config import PipedriveSimConfig
from crmsync.sim.pipedrive.server import run_pipedrive_simulator, serve_pipedrive_simulator_forever
from crmsync.sim.pipedrive.state import PipedriveSim

DEFAULT_KEY = "pipedrive-test-key"


def _with_rate(config: PipedriveSimConfig, rate: int) -> PipedriveSimConfig:
    config.burst_limit = max(1, round(rate * config.burst_window_seconds))
    return config


def _view(sim: PipedriveSim) -> PipedriveSim:
    return sim  # the simulator is its own `CrmSimulator` view


ENTRY = crm_entry(
    title="Pipedrive", default_key=DEFAULT_KEY, webhook_secret=None,
    config_type=PipedriveSimConfig, with_rate=_with_rate, run=run_pipedrive_simulator,
    serve_forever=serve_pipedrive_simulator_forever, view=_view,
)
