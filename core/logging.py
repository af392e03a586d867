"""Structured logs: one JSON object per line, from web, workers and beat alike.

Fields: timestamp, level, event, correlation_id, batch_id, step, duration_ms
(plus logger and any other `extra` given), so a batch can be followed across
processes by grepping its correlation id. With tracing on (core/tracing.py), also
trace_id: the trace the line was written in, to open it in the trace viewer.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from core.tracing import current_trace_id

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
CORE_FIELDS = ("correlation_id", "batch_id", "step", "duration_ms")

# What the current request or task is about (correlation id, batch id): set once at its start by the
# web app or a Celery signal, so every log line carries it without passing it around.
log_context: ContextVar[dict[str, Any] | None] = ContextVar("devpulse_log_context", default=None)


def bind(**values: Any) -> None:
    log_context.set({k: v for k, v in values.items() if v is not None})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "event": record.getMessage(),
            "logger": record.name,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                data[key] = value
        for key, value in (log_context.get() or {}).items():
            data.setdefault(key, value)
        for key in CORE_FIELDS:
            data.setdefault(key, None)
        trace_id = current_trace_id()
        if trace_id is not None:
            data.setdefault("trace_id", trace_id)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class QuietPeriodicTasks(logging.Filter):
    """Drops Celery's INFO lines about the periodic maintenance tasks (beat's "Sending due task", the worker's
    "received" and "succeeded"): they run every few seconds, so an idle system would log several lines a second
    (three per relay run, every 2 s, were a third of a first run's lines). The tasks log what they did themselves
    (at INFO only when they moved something), and their failures still come through at WARNING and above."""

    CELERY_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or record.name not in self.CELERY_LOGGERS:
            return True
        return "devpulse.maintenance." not in record.getMessage()


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(QuietPeriodicTasks())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
