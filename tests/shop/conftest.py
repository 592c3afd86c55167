"""Fixtures for the demo shop's tests (the shared ones are in tests/conftest.py)."""
