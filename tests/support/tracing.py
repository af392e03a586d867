"""Tracing in a test: the SDK's in-memory span exporter, installed the way an OTLP endpoint would install it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core import tracing
from core.logging import JsonFormatter

_exporter: Any = None


@contextmanager
def traced() -> Iterator[Any]:
    """Tracing on in this process (web app and the in-process worker) until the block ends; yields the exporter.

    Start it before the Flask app is built (create_app instruments the app only when tracing is on)."""
    global _exporter
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from tasks.context import database, reset_database
    from tasks.tracing import instrument_celery

    if _exporter is None:  # one per process: a span processor cannot be taken off the provider again
        _exporter = InMemorySpanExporter()
    tracing.start("devpulse-test", exporter=_exporter)
    instrument_celery()
    # The in-process worker's next connections are made through the instrumented driver (and, after the block,
    # through the plain one again). Rebuilt here, before any task runs, not by the first tasks concurrently.
    reset_database()
    database()
    _exporter.clear()
    try:
        yield _exporter
    finally:
        tracing.stop()
        reset_database()
        database()


class JsonLines(logging.Handler):
    """Collects the JSON lines the product's formatter makes, from every thread."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@contextmanager
def json_log_lines(level: int = logging.INFO) -> Iterator[list[dict[str, Any]]]:
    handler = JsonLines()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
