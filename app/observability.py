"""Health, readiness, Prometheus metrics and circuit-breaker administration."""

from __future__ import annotations

import hmac
import logging
import os
import time
from typing import Any

import redis
from flask import Blueprint, Flask, Response, g, jsonify, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from app.auth import require_admin
from app.errors import ApiError
from app.settings import settings
from app.storage import database
from core import logging as json_logging
from core.breakers import breakers
from models.health import GAUGE_CAP, migration_version, outbox_backlog

bp = Blueprint("observability", __name__)
log = logging.getLogger("devpulse.observability")
# One line per request, written by the app (gunicorn's own access log is off: see Procfile).
access_log = logging.getLogger("devpulse.access")

REQUESTS = Counter("devpulse_http_requests_total", "HTTP requests by route and status", ["route", "method", "status"])
EVENTS = Counter("devpulse_events_total", "Ingested events by outcome", ["outcome"])
INGEST_LATENCY = Histogram("devpulse_ingest_latency_seconds", "Time to acknowledge an ingest request",
                           buckets=(0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
BREAKER_STATES = ("closed", "half-open", "open")


class _DatabaseGauges:
    """Outbox gauges read from PostgreSQL at scrape time (the truth, whichever process asks): two small index
    reads, never a count over the outbox's growing history (dispatched records are not counted)."""

    def collect(self):
        pending = GaugeMetricFamily("devpulse_outbox_records",
                                    f"Pending and dead-letter outbox records (counted up to {GAUGE_CAP})",
                                    labels=["status"])
        try:
            with database().session() as session:
                counts = outbox_backlog(session)
            for status in ("pending", "dead_letter"):
                pending.add_metric([status], counts[status])
        except Exception:  # a scrape must still answer while the database is down
            pass
        yield pending
        states = GaugeMetricFamily("devpulse_circuit_breaker_state",
                                   "1 for the current state of each named breaker (shared through Redis)",
                                   labels=["name", "state"])
        for b in breakers.describe():
            for state in BREAKER_STATES:
                states.add_metric([b["name"], state], 1.0 if b["state"] == state else 0.0)
        yield states


def _registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Under gunicorn (and with workers sharing the directory) every process's samples are merged.
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY

        return REGISTRY
    return registry


def _check_metrics_token() -> None:
    """With METRICS_TOKEN set, /metrics answers only `Authorization: Bearer <METRICS_TOKEN>`."""
    expected = settings().metrics_token
    if not expected:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise ApiError(401, "invalid_token", "/metrics requires 'Authorization: Bearer <METRICS_TOKEN>'.",
                       [{"field": "Authorization", "message": "missing or not the metrics token"}],
                       headers={"WWW-Authenticate": 'Bearer realm="devpulse-metrics"'})


@bp.get("/metrics")
def metrics():
    _check_metrics_token()
    output = generate_latest(_registry())
    extra = CollectorRegistry(auto_describe=False)
    extra.register(_DatabaseGauges())
    return Response(output + generate_latest(extra), mimetype=CONTENT_TYPE_LATEST)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


def _migration_head() -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cfg = Config(os.path.join(root, "alembic.ini"))
    cfg.set_main_option("script_location", os.path.join(root, "alembic"))
    return ScriptDirectory.from_config(cfg).get_current_head()


@bp.get("/readyz")
def readyz():
    checks: dict[str, Any] = {}
    try:
        current = migration_version(database().engine)
        checks["postgresql"] = {"ok": True}
        head = _migration_head()
        checks["migrations"] = {"ok": current == head, "current": current, "head": head}
    except Exception as exc:
        # Which dependency is down, never the exception's text: it names hosts, users and paths.
        log.warning("readiness: PostgreSQL unreachable: %s", exc)
        checks["postgresql"] = {"ok": False, "error": "unreachable"}
        checks["migrations"] = {"ok": False, "error": "database unreachable"}
    try:
        cfg = settings()
        client = redis.Redis.from_url(cfg.redis_url, socket_connect_timeout=1, socket_timeout=1)
        client.ping()
        client.close()
        checks["broker"] = {"ok": True}
    except Exception as exc:
        log.warning("readiness: the broker (Redis) is unreachable: %s", exc)
        checks["broker"] = {"ok": False, "error": "unreachable"}
    ready = all(c["ok"] for c in checks.values())
    failing = [name for name, c in checks.items() if not c["ok"]]
    return jsonify({"status": "ready" if ready else "not_ready", "failing": failing, "checks": checks}), (
        200 if ready else 503)


@bp.get("/api/admin/circuit-breakers")
@require_admin
def list_breakers():
    return jsonify({"circuit_breakers": breakers.describe(), "scope": "shared by all processes (Redis)",
                    "pid": os.getpid()})


@bp.post("/api/admin/circuit-breakers/<name>/reset")
@require_admin
def reset_breaker(name: str):
    if not breakers.reset(name):
        raise ApiError(404, "breaker_not_found", f"No circuit breaker named '{name[:64]}'.",
                       [{"field": "name", "message": f"known: {', '.join(breakers.names())}"}])
    return jsonify({"reset": name, "circuit_breakers": breakers.describe()})


def _access_line(route: str, response: Response, elapsed: float) -> None:
    """The request's access line: who, what, the outcome, the counts of an ingest and how long it took."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    principal = g.get("principal")
    named = g.get("ingest_batch")
    developer = principal.developer_id if principal is not None else None
    extra: dict[str, Any] = {
        "step": "request", "correlation_id": g.get("correlation_id"), "method": request.method,
        "path": request.path, "route": route,
        "status": response.status_code, "duration_ms": round(elapsed * 1000, 3),
        "developer_id": developer if developer is not None else (named[0] if named else None),
        "token_id": principal.token_id if principal is not None else None,
        "batch_id": named[1] if named else None,
        "error_code": g.get("error_code"),
        "counts": g.get("ingest_counts"),
        "bytes_in": request.content_length, "bytes_out": response.content_length,
        "remote_addr": request.remote_addr, "user_agent": (request.user_agent.string or "")[:200] or None,
    }
    if g.get("refusal_audited"):
        extra["audited"] = True
    access_log.info("%s %s %s", request.method, request.path, response.status_code, extra=extra)


def init_app(app: Flask) -> None:
    cfg = settings(app)
    breakers.configure(cfg.redis_url)  # breaker state shared with every other web and worker process
    # Every breaker exists from the start, so operators see all of them, tripped or not.
    breakers.get("database", fail_max=cfg.db_breaker_fail_max, reset_timeout=cfg.db_breaker_reset_timeout)
    breakers.get("broker", fail_max=3, reset_timeout=5)
    breakers.get("webhook", fail_max=5, reset_timeout=30)
    if cfg.log_json:
        json_logging.configure_logging(cfg.log_level)

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _count(response):
        route = request.url_rule.rule if request.url_rule is not None else "unmatched"
        elapsed = time.perf_counter() - g.get("request_started", time.perf_counter())
        REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        if request.endpoint == "ingest.orchestrate":
            INGEST_LATENCY.observe(elapsed)
        _access_line(route, response, elapsed)
        return response

    app.register_blueprint(bp)
