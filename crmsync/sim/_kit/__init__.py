"""Plumbing shared by the simulators in `crmsync.sim`, so each provider keeps only its quirks.

- `server`: serve an aiohttp app on a real socket and yield its base URL (`run_sim`:
  the simulator stored in it); run until cancelled behind a printed banner.
- `entry`: a CRM simulator's `CrmSimEntry` (`crmsync.sim.crms`) from its server functions.
- `window`: the exact sliding window of arrival times behind every rate limit.
- `http`: JSON responses, route templates for request counters, cut connections.
- `errors`: the base of the CRMs' API errors (status, message, headers, JSON body).
- `gateway`: the policing every CRM API request passes (dropped connections, latency,
  the provider's admission, errors in its shape, counting, drops after applying).
- `faults`: the faults a CRM simulator injects, and the `POST /_sim/faults` body.
- `stats`: request counters by (method, route, status), 429s, max in any window.
- `admin`: `/_sim/` route pieces (JSON bodies, unknown fields, the faults routes).
- `delivery`: the outgoing HTTP side of webhook delivery (one lazy session, tracked
  background tasks, one POST with a timeout, close with a grace period), the webhook
  faults every deliverer honours, and the queue-or-start lifecycle of a deliverer.
- `seed`: the schedule of seeded shapes, the facts of each, GC paused while seeding.

Private to the simulators: tests and tools use the public names of `crmsync.sim.<crm>`.
"""
