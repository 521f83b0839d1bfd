"""Helpers shared by the test suite (servers, fakes, fault injection)."""
