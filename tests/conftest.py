"""Shared pytest configuration. Fixtures used by more than one test file go here."""
