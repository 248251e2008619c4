"""crmsync.tenant: one tenant inside the process (runtime, supervision, sync passes)."""
