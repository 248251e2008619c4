"""Helpers shared by the tests: the CLI runner, the simulator harnesses, the live daemon."""
