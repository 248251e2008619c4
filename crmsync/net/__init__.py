"""crmsync.net: HTTP plumbing shared by Quo and every CRM (limits, retries, transport)."""
