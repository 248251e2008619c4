"""crmsync.adapters."""
