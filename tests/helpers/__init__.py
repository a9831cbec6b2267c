"""Shared test helpers (private brokers, scenario builders) reused across test suites."""
