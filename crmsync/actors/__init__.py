"""crmsync.actors."""
