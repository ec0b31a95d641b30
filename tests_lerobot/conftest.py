"""Checks every test of this suite must pass (testkit/pytest_guards.py)."""

from testkit.pytest_guards import scheduling_unchanged  # noqa: F401
