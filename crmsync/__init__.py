"""crmsync: keeps CRMs and a Quo (formerly OpenPhone) workspace in sync, for many tenants."""

__version__ = "0.10.0"
