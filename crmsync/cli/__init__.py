"""crmsync.cli."""
