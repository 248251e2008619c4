"""crmsync.sim."""
