"""crmsync.daemon."""
