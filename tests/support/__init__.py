"""Helpers shared by the test modules (plain functions and classes: fixtures live in the conftest files)."""
