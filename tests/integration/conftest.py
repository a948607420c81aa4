"""Fixtures for the integration tests: two real Syncthing instances."""

from syncthing_env import syncthing_pair  # noqa: F401
