"""Fixtures and hooks of the fault tests; the harness they drive (FaultStack, Ledger, Load, checks) is in
tests/faults/harness.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults.harness import FaultStack


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The soak test runs only when asked for (`pytest -m soak`, i.e. `make soak`)."""
    if config.option.markexpr:
        return
    soak = [item for item in items if item.get_closest_marker("soak")]
    if soak:
        config.hook.pytest_deselected(items=soak)
        items[:] = [item for item in items if not item.get_closest_marker("soak")]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def fault_stack(request: pytest.FixtureRequest) -> Iterator[Callable[..., FaultStack]]:
    """Factory: `fault_stack(**env)` starts PostgreSQL + Redis for this test (processes are started by the test)."""
    stacks: list[FaultStack] = []

    def make(**env: Any) -> FaultStack:
        stack = FaultStack(Path(tempfile.mkdtemp(prefix="devpulse-fault-")), **env)
        stacks.append(stack)
        return stack.start_servers()

    yield make
    failed = bool(getattr(getattr(request.node, "rep_call", None), "failed", False))
    keep = failed and os.environ.get("FAULT_KEEP", "") not in ("", "0")
    for stack in stacks:
        if failed:
            print(f"\n[fault logs, {stack.root}]\n{stack.tails()}", file=sys.stderr)
        stack.close(keep=keep)
