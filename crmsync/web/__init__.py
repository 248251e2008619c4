"""crmsync.web: the embedded aiohttp server (webhook intake, health, status, metrics)."""
