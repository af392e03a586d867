"""All configuration, read from environment variables in one place.

Every knob has a typed default so a fresh machine runs with nothing set; the
web process, the workers and beat all read the same `Settings`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import urlsplit


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
    # History imports (app/wakatime_import.py): uploads are written under IMPORT_DIR, and imported events may be
    # up to IMPORT_MAX_AGE_DAYS old instead of MAX_EVENT_AGE_DAYS (every other ingest rule is unchanged).
    import_dir: str = "var/imports"
    import_max_age_days: int = 3650
    max_body_bytes: int = 5 * 1024 * 1024
    max_event_payload_bytes: int = 16 * 1024
    # The whole event as stored (its compact JSON: payload, known fields and any extra keys), and the envelope
    # (every key but `events`, e.g. `client`): extra keys are stored, so they are bounded too.
    max_event_bytes: int = 20 * 1024
    max_envelope_bytes: int = 4 * 1024
    # Values in a body, bounded on the raw bytes before any Python object is built (app/request_body.py).
    max_json_elements: int = 250_000
    # Pipeline
    idle_timeout_seconds: int = 300
    # A debug session without debug.stop ends at the developer's first idle gap, and at most this long after
    # its start (activity/sessions.py): it bounds how far back any recomputation reaches.
    max_debug_session_hours: float = 8.0
    outbox_max_attempts: int = 8
    outbox_base_delay_seconds: float = 2.0
    outbox_max_delay_seconds: float = 300.0
    # The sweeper's backstop: an in-flight batch this old that later batches have overtaken is re-dispatched.
    stuck_after_seconds: int = 300
    # A running job's lease: renewed by its worker every quarter of it; one that ran out means the run was lost
    # (its worker died) and the batch is re-dispatched. Also how long a finished batch may wait for its callback.
    job_lease_seconds: int = 20
    # Runs of one job in a row that may lose their worker (e.g. killed out of memory) before the job is given up:
    # its batch's events are quarantined for it and an admin alert is raised.
    job_max_lost_runs: int = 3
    task_soft_time_limit: int = 60
    task_time_limit: int = 90
    task_max_retries: int = 5
    # Alerts
    alert_freshness_hours: int = 24
    alert_webhook_url: str = ""
    # Required whenever ALERT_WEBHOOK_URL is set (start-up refuses an unsigned webhook).
    alert_webhook_secret: str = ""
    # Per-developer rate cap: alerts announced (SSE + webhook) per developer in any hour; the rest are stored only.
    alert_notify_max_per_hour: int = 60
    admin_alert_webhook_url: str = ""
    # Alert streams (SSE): each ends after this long (clients reconnect with Last-Event-ID), re-checks its token
    # this often (a revoked token's stream ends within it; at most 60), and a token may hold this many at once.
    stream_max_seconds: float = 300.0
    stream_token_recheck_seconds: float = 30.0
    stream_max_per_token: int = 5
    # Open streams one web process serves at most, each on a thread of its pool: with the slots below, keep it
    # under gunicorn's --threads (96) so that streams never take the threads other requests need.
    stream_max_per_process: int = 80
    # Requests that run the app at once per web process (the 4 threads of the former 2 x 4 gthread web):
    # ingest keeps the concurrency, and so the database pool use, it was measured with.
    web_request_slots: int = 4
    # Reliability
    db_retry_budget_ms: int = 300
    db_breaker_fail_max: int = 5
    db_breaker_reset_timeout: int = 5
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 40
    # Per token as well, in the same Redis call (app/rate_limit.py); 0 turns one off. The bursts hold at least
    # one largest batch (1000 events, 5 MiB), and a request larger than a burst passes when the bucket is full.
    rate_limit_events_per_second: float = 200.0
    rate_limit_events_burst: int = 2000
    rate_limit_bytes_per_second: float = 1024.0 * 1024
    rate_limit_bytes_burst: int = 10 * 1024 * 1024
    # A request's headers, then its body, must arrive within these (app/web_worker.py, gunicorn's worker class).
    request_header_timeout_seconds: float = 10.0
    request_body_timeout_seconds: float = 30.0
    # Operations
    # `user:password` for Flower; no default (make run generates one, docker compose requires it).
    flower_basic_auth: str = ""
    # Signs the dashboard's session cookie (app/pages/); empty: a random key per process, so sessions end at a
    # restart and do not carry between gunicorn workers (`make run` generates one into var/secret-key).
    secret_key: str = ""
    # Mark the dashboard's session cookie Secure (set it when the site is served over HTTPS).
    session_cookie_secure: bool = False
    # Where the operator view links to Flower.
    flower_url: str = "http://127.0.0.1:5555"
    # When set, GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>` (Prometheus: `authorization`).
    metrics_token: str = ""
    log_level: str = "INFO"
    # One JSON object per log line (set LOG_JSON=0 for plain text, e.g. under pytest).
    log_json: bool = True
    # Tracing (core/tracing.py): OTLP/HTTP base URL of a collector or trace viewer, e.g. http://127.0.0.1:4318.
    # Unset: tracing is off and nothing is instrumented.
    otel_exporter_otlp_endpoint: str = ""
    # Danger-rule thresholds overridden by DANGER_<FIELD> variables (e.g. DANGER_EXCESSIVE_ERRORS_HIGH=50), by
    # lower-case field name. Numbers here; the names and their ranges are checked against the rules' own
    # thresholds when web and workers start (activity.danger.DangerThresholds.from_overrides).
    danger: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Refused at start-up (web, workers, beat all build Settings first), not at the first alert.
        for name in ("alert_webhook_url", "admin_alert_webhook_url"):
            url = getattr(self, name)
            if url:
                parts = urlsplit(url)
                if parts.scheme not in ("http", "https") or not parts.hostname:
                    raise SettingsError(f"{name.upper()}={url[:60]!r} must be an http:// or https:// URL with a host")
        if self.alert_webhook_url and not self.alert_webhook_secret:
            raise SettingsError("ALERT_WEBHOOK_URL is set but ALERT_WEBHOOK_SECRET is empty: receivers could not "
                                "verify the alerts; set a secret (e.g. `openssl rand -hex 32`)")
        if self.alert_notify_max_per_hour < 0:
            raise SettingsError(f"ALERT_NOTIFY_MAX_PER_HOUR={self.alert_notify_max_per_hour} must be >= 0")

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
