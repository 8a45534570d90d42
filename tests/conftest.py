"""Shared pytest configuration. Fixtures used by more than one test file go here."""

from helpers import native_loops  # noqa: F401  (the fixture behind helpers.needs_native)
