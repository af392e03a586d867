"""All configuration, read from environment variables in one place.

Every knob has a typed default so a fresh machine runs with nothing set; the
web process, the workers and beat all read the same `Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class SettingsError(ValueError):
    """A configuration value that cannot be used: raised at start-up, naming the variable."""


def _parse(name: str, kind: type, raw: str) -> Any:
    if kind is bool:
        return raw.strip().lower() in {"1", "true", "yes", "on"}
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw[:40]!r} is not {'an integer' if kind is int else 'a number'}") from None
    return raw


DANGER_PREFIX = "DANGER_"


@dataclass(frozen=True)
class Settings:
    database_url: str = "postgresql+psycopg2://postgres@127.0.0.1:5432/devpulse"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Ingestion
    max_event_age_days: int = 30
    max_events_per_batch: int = 1000
    max_body_bytes: int = 5 * 1024 * 1024
    max_event_payload_bytes: int = 16 * 1024
    # Pipeline
    idle_timeout_seconds: int = 300
    # A debug session without debug.stop ends at the developer's first idle gap, and at most this long after
    # its start (activity/sessions.py): it bounds how far back any recomputation reaches.
    max_debug_session_hours: float = 8.0
    outbox_max_attempts: int = 8
    outbox_base_delay_seconds: float = 2.0
    outbox_max_delay_seconds: float = 300.0
    stuck_after_seconds: int = 300
    task_soft_time_limit: int = 60
    task_time_limit: int = 90
    task_max_retries: int = 5
    # Alerts
    alert_freshness_hours: int = 24
    alert_webhook_url: str = ""
    alert_webhook_secret: str = ""
    admin_alert_webhook_url: str = ""
    # Reliability
    db_retry_budget_ms: int = 300
    db_breaker_fail_max: int = 5
    db_breaker_reset_timeout: int = 5
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 40
    # Operations
    # `user:password` for Flower; no default (make run generates one, docker compose requires it).
    flower_basic_auth: str = ""
    # When set, GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>` (Prometheus: `authorization`).
    metrics_token: str = ""
    log_level: str = "INFO"
    # One JSON object per log line (set LOG_JSON=0 for plain text, e.g. under pytest).
    log_json: bool = True
    # Danger-rule thresholds overridden by DANGER_<FIELD> variables (e.g. DANGER_EXCESSIVE_ERRORS_HIGH=50), by
    # lower-case field name. Numbers here; the names and their ranges are checked against the rules' own
    # thresholds when web and workers start (activity.danger.DangerThresholds.from_overrides).
    danger: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "danger":
                continue
            raw = env.get(f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name.upper(), type(f.default), raw)
        values["danger"] = {
            key[len(DANGER_PREFIX):].lower(): _parse(key, float, raw)
            for key, raw in env.items() if key.startswith(DANGER_PREFIX) and raw != ""
        }
        values.update(overrides)
        return cls(**values)

    @property
    def sqlalchemy_url(self) -> str:
        # Accept the plain libpq form that most platforms hand out.
        url = self.database_url
        if url.startswith("postgres://"):
            url = "postgresql://" + url[len("postgres://"):]
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg2://" + url[len("postgresql://"):]
        return url
