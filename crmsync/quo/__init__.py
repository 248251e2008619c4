"""Quo (formerly OpenPhone) public API v1: client, models, rate limiter, webhook signatures."""
