"""The developer's alerts API (list by priority, filters, acknowledge), the SSE stream on a real HTTP
server, and the signed webhook's retries and circuit breaker, on the real PostgreSQL and Redis.

The end-to-end pushes (a batch through the pipeline to the stream and to the webhook) live in
tests/tasks/test_danger_detection.py, next to the in-process worker they need.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from activity.danger import Detection
from models.alerts import alert_document
from models.danger_detection import store_detections
from models.tables import AdminAlert, Alert
from tests.factories import auth, iso

FRESH = timedelta(hours=24)


# ---------------------------------------------------------------------------------------------------------- helpers


def seed(db, developer_id: str, pattern: str, severity: str, window_end: datetime, *,  # type: ignore[no-untyped-def]
         minutes: float = 10, key: str | None = None, detected_at: datetime | None = None) -> dict[str, Any]:
    """Store one alert the way the detection job does; returns its view."""
    start = window_end - timedelta(minutes=minutes)
    d = Detection(pattern, severity, start, window_end, key or start.isoformat(), {"measured": 1},
                  f"Take a break ({pattern}, {severity}).")
    with db.transaction() as s:
        written, _ = store_detections(s, developer_id, [d], batch_id=uuid.uuid4(), correlation_id="corr-seed",
                                      now=detected_at or window_end + timedelta(seconds=5), freshness=FRESH)
        assert written == 1
        alert = s.scalars(select(Alert).where(Alert.developer_id == developer_id, Alert.pattern == pattern,
                                              Alert.episode_key == d.episode_key)).one()
        return alert_document(alert)


def listed(client, token: str, developer_id: str = "dev-1", **params: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    r = client.get(f"/api/developers/{developer_id}/alerts", query_string=params, headers=auth(token))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["developer_id"] == developer_id
    return r.get_json()["alerts"]


def base_time() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)


# ------------------------------------------------------------------------------------------------------------ list


def test_alerts_listed_highest_severity_first_then_newest(client, make_token, clean_db):
    token = make_token("dev-1")
    t = base_time()
    # Stored in an order that is neither the priority nor the time order.
    low_newest = seed(clean_db, "dev-1", "late_night_work", "low", t - timedelta(hours=1))
    medium_old = seed(clean_db, "dev-1", "excessive_errors", "medium", t - timedelta(hours=3))
    high_old = seed(clean_db, "dev-1", "extended_debugging", "high", t - timedelta(hours=5), key="dbg-1")
    medium_new = seed(clean_db, "dev-1", "no_break", "medium", t - timedelta(hours=2))
    critical_oldest = seed(clean_db, "dev-1", "high_ai_dependency", "critical", t - timedelta(hours=6))
    high_new = seed(clean_db, "dev-1", "excessive_errors", "high", t - timedelta(minutes=30))
    seed(clean_db, "dev-2", "excessive_errors", "critical", t)  # someone else's

    alerts = listed(client, token)
    assert [a["alert_id"] for a in alerts] == [
        a["alert_id"] for a in (critical_oldest, high_new, high_old, medium_new, medium_old, low_newest)]
    assert all(a["developer_id"] == "dev-1" for a in alerts)
    first = alerts[0]
    assert first == critical_oldest
    assert set(first) >= {"alert_id", "developer_id", "pattern", "severity", "window_start", "window_end", "details",
                          "recommendation", "batch_id", "correlation_id", "detected_at", "status", "stale"}


def test_alerts_filtered_by_status_and_since(client, make_token, clean_db):
    token = make_token("dev-1")
    t = base_time()
    old = seed(clean_db, "dev-1", "excessive_errors", "high", t - timedelta(hours=3))
    new = seed(clean_db, "dev-1", "no_break", "medium", t - timedelta(hours=1))
    r = client.post(f"/api/developers/dev-1/alerts/{old['alert_id']}/ack", headers=auth(token))
    assert r.status_code == 200

    assert [a["alert_id"] for a in listed(client, token, status="open")] == [new["alert_id"]]
    assert [a["alert_id"] for a in listed(client, token, status="acknowledged")] == [old["alert_id"]]
    assert len(listed(client, token)) == 2

    since = t - timedelta(hours=2)
    assert [a["alert_id"] for a in listed(client, token, since=iso(since))] == [new["alert_id"]]
    # Any offset is accepted and means the same instant.
    plus_two = since.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert [a["alert_id"] for a in listed(client, token, since=plus_two)] == [new["alert_id"]]
    assert listed(client, token, since=iso(t + timedelta(minutes=5))) == []
    assert listed(client, token, status="open", since=iso(t - timedelta(hours=4))) == [new]  # both at once
    assert listed(client, token, status="acknowledged", since=iso(since)) == []


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "closed"}, "status"),
    ({"since": "yesterday"}, "since"),
    ({"since": "2026-03-02T09:00:00"}, "since"),  # no offset: ambiguous
])
def test_alerts_bad_filters_are_400(client, make_token, clean_db, params, field):
    token = make_token("dev-1")
    r = client.get("/api/developers/dev-1/alerts", query_string=params, headers=auth(token))
    assert r.status_code == 400, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "invalid_parameter" and error["details"][0]["field"] == field


def test_alerts_require_the_developers_token(client, make_token, clean_db):
    seed(clean_db, "dev-1", "excessive_errors", "medium", base_time())
    other = make_token("dev-2")
    assert client.get("/api/developers/dev-1/alerts").status_code == 401
    assert client.get("/api/developers/dev-1/alerts", headers=auth("not-a-token")).status_code == 401
    r = client.get("/api/developers/dev-1/alerts", headers=auth(other))
    assert r.status_code == 403 and "dev-1" not in json.dumps(r.get_json().get("alerts", []))
    assert listed(client, other, "dev-2") == []


# ------------------------------------------------------------------------------------------------------------- ack


def test_ack_sets_acknowledged_once(client, make_token, clean_db):
    token = make_token("dev-1")
    alert = seed(clean_db, "dev-1", "excessive_errors", "medium", base_time())
    before = datetime.now(UTC)
    r = client.post(f"/api/developers/dev-1/alerts/{alert['alert_id']}/ack", headers=auth(token))
    assert r.status_code == 200, r.get_json()
    acked = r.get_json()
    assert acked["alert_id"] == alert["alert_id"] and acked["status"] == "acknowledged"
    assert datetime.fromisoformat(acked["acknowledged_at"]) >= before - timedelta(seconds=1)
    assert {k: v for k, v in acked.items() if k not in ("status", "acknowledged_at")} == {
        k: v for k, v in alert.items() if k not in ("status", "acknowledged_at")}
    [stored] = listed(client, token)
    assert stored == acked

    again = client.post(f"/api/developers/dev-1/alerts/{alert['alert_id']}/ack", headers=auth(token))
    assert again.status_code == 200 and again.get_json() == acked  # idempotent: same acknowledged_at


def test_ack_errors(client, make_token, clean_db):
    token, other = make_token("dev-1"), make_token("dev-2")
    alert = seed(clean_db, "dev-1", "excessive_errors", "medium", base_time())
    url = f"/api/developers/dev-1/alerts/{alert['alert_id']}/ack"

    r = client.post(f"/api/developers/dev-1/alerts/{uuid.uuid4()}/ack", headers=auth(token))
    assert r.status_code == 404 and "alert_not_found" in json.dumps(r.get_json())
    r = client.post("/api/developers/dev-1/alerts/not-a-uuid/ack", headers=auth(token))
    assert r.status_code == 400 and "invalid_alert_id" in json.dumps(r.get_json())
    assert client.post(url).status_code == 401
    r = client.post(url, headers=auth(other))
    assert r.status_code == 403 and "forbidden_developer" in json.dumps(r.get_json())
    # Another developer cannot reach the alert through their own path either.
    r = client.post(f"/api/developers/dev-2/alerts/{alert['alert_id']}/ack", headers=auth(other))
    assert r.status_code == 404
    assert listed(client, token)[0]["status"] == "open"


# ----------------------------------------------------------------------------------------------------------- SSE


@pytest.fixture
def live_server(app) -> Iterator[int]:  # type: ignore[no-untyped-def]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def read_stream(port: int, path: str, token: str, on_connected: Any) -> tuple[int, list[str], float]:
    """Open the stream, call on_connected() after the first line, read to the end; (status, lines, seconds)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    started = time.monotonic()
    conn.request("GET", path, headers=auth(token))
    response = conn.getresponse()
    lines: list[str] = []
    try:
        if response.status != 200:
            return response.status, [response.read().decode()], time.monotonic() - started
        assert response.getheader("Content-Type", "").startswith("text/event-stream")
        assert response.getheader("Cache-Control") == "no-cache"
        while line := response.readline():
            lines.append(line.decode("utf-8").rstrip("\r\n"))
            if len(lines) == 1:
                on_connected()
        return response.status, lines, time.monotonic() - started
    finally:
        conn.close()


def test_stream_pushes_the_developers_alerts_as_sse(live_server, make_token, clean_db):
    from tasks.alert_delivery import push

    token = make_token("dev-1")
    mine = seed(clean_db, "dev-1", "excessive_errors", "high", base_time())
    theirs = seed(clean_db, "dev-2", "excessive_errors", "high", base_time())
    pushed_at: list[float] = []

    def publish() -> None:
        pushed_at.append(time.monotonic())
        push([theirs, mine])

    status, lines, seconds = read_stream(live_server, "/api/developers/dev-1/alerts/stream?max_seconds=2",
                                         token, publish)
    assert status == 200
    assert lines[0] == ": connected"
    events = "\n".join(lines[1:]).strip().split("\n\n")
    assert events == [f"event: alert\nid: {mine['alert_id']}\ndata: {json.dumps(mine)}"]
    assert 1.9 <= seconds < 4  # max_seconds bounds the stream


def test_stream_is_only_for_the_developer(live_server, make_token, clean_db):
    other = make_token("dev-2")
    status, body, _ = read_stream(live_server, "/api/developers/dev-1/alerts/stream?max_seconds=1", other,
                                  lambda: None)
    assert status == 403 and "forbidden_developer" in body[0]
    status, body, _ = read_stream(live_server, "/api/developers/dev-1/alerts/stream?max_seconds=1", "bogus",
                                  lambda: None)
    assert status == 401


@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-1"])
def test_stream_rejects_a_bad_max_seconds(client, make_token, clean_db, value):
    token = make_token("dev-1")
    r = client.get(f"/api/developers/dev-1/alerts/stream?max_seconds={value}", headers=auth(token))
    if r.status_code != 400:
        r.close()  # never read an (unbounded) stream
    assert r.status_code == 400
    error = r.get_json()["error"]
    assert error["code"] == "invalid_parameter" and error["details"][0]["field"] == "max_seconds"


# ---------------------------------------------------------------------------------------------------------- webhook


class Receiver(ThreadingHTTPServer):
    """A real local webhook endpoint answering `status` and keeping every request."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.hits: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.hits.append((dict(self.headers.items()), body))
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/hook"

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


@pytest.fixture
def webhook_settings(app) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """Swap the workers' settings (create_app has just configured them) and restore them afterwards."""
    from core.breakers import breakers
    from tasks.celery_app import app as celery

    original = celery.conf.devpulse_settings
    breakers.reset("webhook")

    def use(url: str, secret: str = "hook-secret") -> None:
        celery.conf.devpulse_settings = dataclasses.replace(original, alert_webhook_url=url,
                                                            alert_webhook_secret=secret)

    yield use
    celery.conf.devpulse_settings = original
    breakers.reset("webhook")


def deliveries(db, alert_id: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        return s.get(Alert, uuid.UUID(alert_id)).deliveries


def test_webhook_delivery_is_signed_and_recorded(clean_db, webhook_settings):
    from tasks.alert_delivery import deliver_webhook

    receiver = Receiver(204)
    try:
        webhook_settings(receiver.url, "top-secret")
        alert = seed(clean_db, "dev-1", "no_break", "high", base_time())
        assert deliver_webhook.apply(args=(alert["alert_id"],), kwargs={"alert": alert}).get() == "delivered"
        [(headers, raw)] = receiver.hits
    finally:
        receiver.stop()
    assert json.loads(raw) == {"type": "devpulse.alert", "alert": alert}
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Devpulse-Signature"] == "sha256=" + hmac.new(b"top-secret", raw, hashlib.sha256).hexdigest()
    [entry] = deliveries(clean_db, alert["alert_id"])
    assert {k: entry[k] for k in ("channel", "attempt", "outcome", "status")} == {
        "channel": "webhook", "attempt": 1, "outcome": "delivered", "status": 204}


@pytest.mark.parametrize("failure", ["http_500", "closed_port"])
def test_webhook_failures_are_retried_then_the_breaker_opens(clean_db, webhook_settings, monkeypatch, failure):
    import core.retry
    import tasks.alert_delivery as delivery
    from core.breakers import breakers

    receiver = Receiver(500)
    try:
        webhook_settings(receiver.url if failure == "http_500" else closed_port_url())
        # Record the backoff bounds the task asks for (the eager retries below do not sleep).
        bounds: list[float] = []
        uniform = core.retry.random.uniform

        def recording_uniform(a: float, b: float) -> float:
            bounds.append(b)
            return uniform(a, b)

        monkeypatch.setattr(core.retry.random, "uniform", recording_uniform)
        alert = seed(clean_db, "dev-1", "excessive_errors", "high", base_time())
        result = delivery.deliver_webhook.apply(args=(alert["alert_id"],), kwargs={"alert": alert})
        assert result.get() == "failed"

        attempts = deliveries(clean_db, alert["alert_id"])
        assert [e["attempt"] for e in attempts] == [1, 2, 3, 4, 5, 6]  # 1 + WEBHOOK_MAX_RETRIES
        assert all(e["channel"] == "webhook" and e["outcome"] == "failed" and e["error"] for e in attempts)
        first_error = "HTTPError: HTTP Error 500" if failure == "http_500" else "Connection refused"
        assert first_error in attempts[0]["error"]
        assert "CircuitBreakerError" in attempts[-1]["error"]
        assert bounds == [2.0, 4.0, 8.0, 16.0, 32.0]  # exponential, full jitter
        assert len(receiver.hits) == (5 if failure == "http_500" else 0)  # the 6th call was not made
        assert breakers.get("webhook").current_state == "open"
        with clean_db.session() as s:
            [admin] = s.scalars(select(AdminAlert).where(AdminAlert.kind == "webhook_failed")).all()
        assert admin.context["alert_id"] == alert["alert_id"] and admin.context["attempt"] == 6

        # While open, further deliveries cost nothing: no request, no waiting.
        hits = len(receiver.hits)
        later = seed(clean_db, "dev-1", "no_break", "high", base_time())
        started = time.monotonic()
        assert delivery.deliver_webhook.apply(args=(later["alert_id"],), kwargs={"alert": later}).get() == "failed"
        assert time.monotonic() - started < 1.0
        assert len(receiver.hits) == hits
        assert all("CircuitBreakerError" in e["error"] for e in deliveries(clean_db, later["alert_id"]))

        # Once the breaker is reset and the receiver is healthy, delivery resumes.
        breakers.reset("webhook")
        receiver.status = 200
        webhook_settings(receiver.url)
        assert delivery.deliver_webhook.apply(args=(later["alert_id"],), kwargs={"alert": later}).get() == "delivered"
        assert deliveries(clean_db, later["alert_id"])[-1]["outcome"] == "delivered"
    finally:
        receiver.stop()
