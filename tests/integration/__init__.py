"""Integration tests: real local services through the session fixtures in tests/conftest.py."""
