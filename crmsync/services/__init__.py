"""crmsync.services: what the actors and webhooks do to Quo and the CRM (no queues)."""
