"""Fixtures of the tests of the HTTP API (app/)."""

from __future__ import annotations

import pytest


@pytest.fixture
def token(make_token) -> str:
    return make_token("dev-1")
