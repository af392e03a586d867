"""Health, readiness, Prometheus metrics, circuit-breaker administration and JSON log lines."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from core import logging as json_logging
from core.breakers import breakers
from tests.support.factories import auth, batch, event

URL = "/api/workflow/events/orchestrate"
CLOSED_REDIS = "redis://127.0.0.1:1/0"
CLOSED_DATABASE = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"


@pytest.fixture(autouse=True)
def _closed_breakers() -> Iterator[None]:
    yield
    for name in breakers.names():
        breakers.reset(name)


@pytest.fixture
def admin(make_token) -> str:
    return make_token(None, admin=True)


def _other_app(redis_url: str, **overrides: Any):
    from app import create_app

    settings = {"database_url": os.environ["DATABASE_URL"], "redis_url": redis_url, **overrides}
    application = create_app(settings)
    application.config["TESTING"] = True
    return application


def samples(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.mimetype == "text/plain"
    out = {}
    for family in text_string_to_metric_families(r.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: dict, metric: str, **labels: str) -> float:
    return metrics.get((metric, tuple(sorted(labels.items()))), 0.0)


# ---------------------------------------------------------------------------------------------- health, ready


def test_healthz_is_200(client):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok"}


def test_readyz_is_200_when_postgresql_the_broker_and_migrations_are_ok(client):
    r = client.get("/readyz")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["status"] == "ready"
    assert body["failing"] == []
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "postgresql": True, "broker": True, "migrations": True}
    migrations = body["checks"]["migrations"]
    assert migrations["current"] == migrations["head"] is not None


def test_readyz_is_503_naming_the_broker_when_redis_is_unreachable(app, redis_url):
    down = _other_app(CLOSED_REDIS)
    try:
        r = down.test_client().get("/readyz")
    finally:
        down.extensions["devpulse.db"].dispose()
    assert r.status_code == 503
    body = r.get_json()
    assert body["status"] == "not_ready"
    assert body["failing"] == ["broker"]
    assert body["checks"]["broker"]["ok"] is False
    # It names the dependency, never the exception text (hosts, ports, users, paths).
    assert body["checks"]["broker"]["error"] == "unreachable"
    assert "127.0.0.1" not in r.get_data(as_text=True)
    assert body["checks"]["postgresql"]["ok"] is True


def test_readyz_is_503_naming_postgresql_when_the_database_is_unreachable(app, redis_url):
    down = _other_app(redis_url, database_url=CLOSED_DATABASE)
    try:
        r = down.test_client().get("/readyz")
    finally:
        down.extensions["devpulse.db"].dispose()
    assert r.status_code == 503
    assert r.get_json()["failing"] == ["postgresql", "migrations"]
    assert r.get_json()["checks"]["postgresql"]["error"] == "unreachable"
    assert "127.0.0.1" not in r.get_data(as_text=True) and "postgres" not in str(r.get_json()["checks"]["postgresql"])
    assert r.get_json()["checks"]["broker"]["ok"] is True


def test_readyz_is_503_when_the_schema_is_behind_the_migrations(client, db):
    with db.engine.begin() as conn:
        head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        conn.execute(text("UPDATE alembic_version SET version_num = 'older'"))
    try:
        r = client.get("/readyz")
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})
    assert r.status_code == 503
    assert r.get_json()["failing"] == ["migrations"]
    assert r.get_json()["checks"]["migrations"] == {"ok": False, "current": "older", "head": head}


# ---------------------------------------------------------------------------------------------------- metrics


def test_metrics_count_requests_events_latency_outbox_and_breakers(client, make_token, clean_db):
    token = make_token("dev-1")
    before = samples(client)
    body = batch([event(), event(), {"type": 1}])
    assert client.post(URL, json=body, headers=auth(token)).status_code == 202
    assert client.post(URL, json={**body, "sent_at": body["sent_at"]}, headers=auth(token)).status_code == 200
    assert client.post(URL, json=batch([event()]), headers={"Authorization": "Bearer nope"}).status_code == 401
    after = samples(client)

    def delta(metric: str, **labels: str) -> float:
        return value(after, metric, **labels) - value(before, metric, **labels)

    route = "/api/workflow/events/orchestrate"
    assert delta("devpulse_http_requests_total", route=route, method="POST", status="202") == 1
    assert delta("devpulse_http_requests_total", route=route, method="POST", status="200") == 1
    assert delta("devpulse_http_requests_total", route=route, method="POST", status="401") == 1
    assert delta("devpulse_http_requests_total", route="/metrics", method="GET", status="200") == 1
    assert delta("devpulse_events_total", outcome="accepted") == 2
    assert delta("devpulse_events_total", outcome="rejected") == 1
    assert delta("devpulse_ingest_latency_seconds_count") == 3
    assert delta("devpulse_ingest_latency_seconds_sum") > 0
    assert delta("devpulse_ingest_latency_seconds_bucket", le="+Inf") == 3
    with clean_db.engine.connect() as conn:
        pending = conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'pending'")).scalar_one()
    assert pending == 1
    assert value(after, "devpulse_outbox_records", status="pending") == pending
    assert value(after, "devpulse_outbox_records", status="dead_letter") == 0
    for name in ("database", "broker", "webhook"):
        assert value(after, "devpulse_circuit_breaker_state", name=name, state="closed") == 1
        assert value(after, "devpulse_circuit_breaker_state", name=name, state="open") == 0


def test_metrics_show_an_open_breaker_and_still_answer_without_the_database(app, redis_url):
    breakers.get("broker").open()
    down = _other_app(redis_url, database_url=CLOSED_DATABASE)
    try:
        got = samples(down.test_client())
    finally:
        down.extensions["devpulse.db"].dispose()
    assert value(got, "devpulse_circuit_breaker_state", name="broker", state="open") == 1
    assert value(got, "devpulse_circuit_breaker_state", name="broker", state="closed") == 0
    assert not [k for k in got if k[0] == "devpulse_outbox_records"]  # unknown, not a made-up zero


def _plan_nodes(node: dict, ancestors: tuple[str, ...] = ()) -> Iterator[tuple[dict, tuple[str, ...]]]:
    yield node, ancestors
    for child in node.get("Plans", []):
        yield from _plan_nodes(child, (*ancestors, node["Node Type"]))


def test_a_scrape_reads_the_outbox_through_small_indexes_and_a_limit_never_its_history(client, app, clean_db):
    """Dispatched outbox records are history and grow for ever: a scrape must not count them (or scan them)."""
    from sqlalchemy import event as sa_event

    engine = app.extensions["devpulse.db"].engine
    statements: list[tuple[str, Any]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement, parameters))

    sa_event.listen(engine, "before_cursor_execute", capture)
    try:
        samples(client)
    finally:
        sa_event.remove(engine, "before_cursor_execute", capture)
    on_outbox = []
    with clean_db.engine.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")  # what the plan would be on a large table
        for statement, parameters in statements:
            if "outbox" not in statement:
                continue
            plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters).scalar_one()
            for node, ancestors in _plan_nodes(plan[0]["Plan"]):
                if node.get("Relation Name") == "outbox":
                    on_outbox.append(node)
                    assert node["Node Type"] != "Seq Scan", statement
                    assert node.get("Index Name") in ("ix_outbox_pending", "ix_outbox_dead_letter"), statement
                    assert "Limit" in ancestors, f"an unbounded read of the outbox per scrape: {statement}"
    assert len(on_outbox) == 2  # pending and dead letters


def test_metrics_require_the_metrics_token_when_one_is_set(redis_url):
    secured = _other_app(redis_url, metrics_token="m-" + "s" * 30)
    try:
        c = secured.test_client()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic bS1zc3Nz"}):
            r = c.get("/metrics", headers=headers)
            assert r.status_code == 401, headers
            assert r.get_json()["error"]["details"][0]["field"] == "Authorization"
            assert r.headers["WWW-Authenticate"].startswith("Bearer")
        r = c.get("/metrics", headers={"Authorization": "Bearer m-" + "s" * 30})
        assert r.status_code == 200
        assert "devpulse_http_requests_total" in r.get_data(as_text=True)
        assert c.get("/healthz").status_code == 200  # only /metrics is behind the token
    finally:
        secured.extensions["devpulse.db"].dispose()


# ------------------------------------------------------------------------------------------------- breakers


def test_admin_lists_the_breakers_and_resets_one(client, admin):
    r = client.get("/api/admin/circuit-breakers", headers=auth(admin))
    assert r.status_code == 200
    listed = {b["name"]: b for b in r.get_json()["circuit_breakers"]}
    assert {"database", "broker", "webhook"} <= set(listed)
    assert listed["database"]["state"] == "closed"
    assert set(listed["database"]) == {"name", "state", "failure_count", "fail_max", "reset_timeout",
                                       "last_failure_at", "last_failure", "source"}
    assert listed["database"]["source"] == "redis"
    assert r.get_json()["scope"] == "shared by all processes (Redis)"

    webhook = breakers.get("webhook")
    for _ in range(webhook.fail_max):
        with contextlib.suppress(Exception):  # the breaker counts it: opening it is what this loop is for
            webhook.call(_refuse)
    assert webhook.current_state == "open"
    listed = {b["name"]: b for b in client.get("/api/admin/circuit-breakers", headers=auth(admin))
              .get_json()["circuit_breakers"]}
    assert listed["webhook"]["state"] == "open"
    assert listed["webhook"]["failure_count"] == webhook.fail_max
    assert "ConnectionRefusedError" in listed["webhook"]["last_failure"]
    datetime.fromisoformat(listed["webhook"]["last_failure_at"])

    r = client.post("/api/admin/circuit-breakers/webhook/reset", headers=auth(admin))
    assert r.status_code == 200
    assert r.get_json()["reset"] == "webhook"
    assert webhook.current_state == "closed"
    assert webhook.fail_counter == 0
    assert {b["name"]: b["state"] for b in r.get_json()["circuit_breakers"]}["webhook"] == "closed"


def _refuse() -> None:
    raise ConnectionRefusedError("nobody listens")


def test_resetting_an_unknown_breaker_is_404(client, admin):
    r = client.post("/api/admin/circuit-breakers/nope/reset", headers=auth(admin))
    assert r.status_code == 404
    error = r.get_json()["error"]
    assert error["code"] == "breaker_not_found"
    assert error["details"][0]["field"] == "name"
    assert "database" in error["details"][0]["message"]
    assert "nope" not in breakers.names()  # asking did not create it


# ----------------------------------------------------------------------------------------------- JSON logging


@pytest.fixture
def log_context() -> Iterator[None]:
    reset = json_logging.log_context.set(None)
    yield
    json_logging.log_context.reset(reset)


def _record(msg: str = "batch %s stored", *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("devpulse.test", logging.INFO, __file__, 1, msg, args or ("b-1",), None)
    for key, val in extra.items():
        setattr(record, key, val)
    return record


def test_json_formatter_writes_the_core_fields(log_context):
    batch_id = uuid.uuid4()
    line = json_logging.JsonFormatter().format(_record(correlation_id="c-1", batch_id=batch_id, step="persisted",
                                                       duration_ms=12.5, developer="dev-1"))
    data = json.loads(line)
    assert "\n" not in line
    assert {"timestamp", "level", "event", "correlation_id", "batch_id", "step", "duration_ms"} <= set(data)
    assert data["level"] == "INFO"
    assert data["event"] == "batch b-1 stored"
    assert data["correlation_id"] == "c-1"
    assert data["batch_id"] == str(batch_id)  # anything JSON cannot hold is written as text
    assert data["step"] == "persisted"
    assert data["duration_ms"] == 12.5
    assert data["developer"] == "dev-1"  # other extras are kept too
    assert data["logger"] == "devpulse.test"
    assert datetime.fromisoformat(data["timestamp"]).utcoffset().total_seconds() == 0


def test_json_formatter_writes_null_for_missing_core_fields_and_the_exception(log_context):
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record()
        record.exc_info = sys.exc_info()
    data = json.loads(json_logging.JsonFormatter().format(record))
    assert data["correlation_id"] is None and data["batch_id"] is None
    assert data["step"] is None and data["duration_ms"] is None
    assert "ValueError: boom" in data["exception"]


def test_bound_context_is_on_every_line_and_explicit_extras_win(log_context):
    json_logging.bind(correlation_id="c-bound", batch_id="b-bound", step=None)
    fmt = json_logging.JsonFormatter()
    data = json.loads(fmt.format(_record()))
    assert (data["correlation_id"], data["batch_id"], data["step"]) == ("c-bound", "b-bound", None)
    data = json.loads(fmt.format(_record(step="aggregate", correlation_id="c-explicit")))
    assert (data["correlation_id"], data["batch_id"], data["step"]) == ("c-explicit", "b-bound", "aggregate")


def test_a_log_line_inside_a_request_carries_its_correlation_id(app, log_context):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_logging.JsonFormatter())
    logger = logging.getLogger("devpulse.test.request")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def probe():
        logger.info("inside", extra={"step": "probe", "duration_ms": 1})
        return "ok"

    app.add_url_rule("/_log_probe", "log_probe", probe)
    try:
        r = app.test_client().get("/_log_probe", headers={"X-Correlation-ID": "req-42"})
    finally:
        logger.removeHandler(handler)
    assert r.status_code == 200
    data = json.loads(stream.getvalue().strip())
    assert (data["event"], data["correlation_id"], data["step"], data["duration_ms"]) == ("inside", "req-42",
                                                                                          "probe", 1)


def test_configure_logging_puts_one_json_object_per_line_on_the_root_logger(log_context):
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        json_logging.configure_logging("warning")
        assert root.level == logging.WARNING
        assert len(root.handlers) == 1
        assert isinstance(root.handlers[0].formatter, json_logging.JsonFormatter)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
