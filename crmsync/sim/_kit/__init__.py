"""Plumbing shared by the simulators in `crmsync.sim`, so each provider keeps only its quirks.

- `server`: serve an aiohttp app on a real socket and yield its base URL; run until
  cancelled behind a printed banner.
- `window`: the exact sliding window of arrival times behind both rate limits.
- `delivery`: the outgoing HTTP side of webhook delivery (one lazy session, tracked
  background tasks, one POST with a timeout, close with a grace period).
- `http`: JSON responses and route templates for request counters.

Private to the simulators: tests and tools use the public names of `crmsync.sim.quo`
and `crmsync.sim.attio`.
"""
