"""Root conftest: shared fixtures for core and plugin tests (real services)."""

pytest_plugins = ["tests.support.fixtures"]
