"""Alert delivery from the notification outbox (models/alert_notifications.py, tasks/alert_delivery.py), through the
real pipeline (in-process worker, real Redis and PostgreSQL) to a real local webhook receiver: the record is
written with the alert, a Redis error after the commit loses nothing, retries back off to a dead letter, errors
shown to developers are generic, and a burst is one request per developer and batch, under a rate cap.

The signed webhook of a single alert and the SSE push are in tests/tasks/test_danger_detection.py.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import select, text

from models.tables import AdminAlert, Alert, AlertNotification, AuditRecord
from tests.support.factories import auth, batch, event, now
from tests.support.pipeline import wait_for, wait_processed
from tests.support.webhooks import Receiver

URL = "/api/workflow/events/orchestrate"
SECRET = "hook-secret-" + uuid.uuid4().hex


def error_events(count: int = 24, minutes_ago: int = 20) -> list[dict[str, Any]]:
    start = now() - timedelta(minutes=minutes_ago)
    return [event("build.result", start + i * timedelta(seconds=20), success=False, duration_ms=900)
            for i in range(count)]


def post(client, token: str, events: list[dict[str, Any]], developer_id: str = "dev-1") -> str:
    body = batch(events, developer_id=developer_id)
    r = client.post(URL, json=body, headers=auth(token))
    assert r.status_code == 202, r.get_json()
    return str(body["batch_id"])


def notifications(db, developer_id: str | None = None) -> list[AlertNotification]:
    with db.session() as s:
        query = select(AlertNotification).order_by(AlertNotification.id)
        if developer_id is not None:
            query = query.where(AlertNotification.developer_id == developer_id)
        return list(s.scalars(query))


def alerts(db, developer_id: str = "dev-1") -> list[Alert]:
    with db.session() as s:
        return list(s.scalars(select(Alert).where(Alert.developer_id == developer_id)))


def make_due(db) -> None:
    with db.transaction() as s:
        s.execute(text("UPDATE alert_notifications SET next_attempt_at = now() - interval '1 second'"))


def drain(listener: Any, quiet: float = 1.0) -> list[dict[str, Any]]:
    """Every message the subscription has received, until none came for `quiet` seconds."""
    out = []
    deadline = time.monotonic() + quiet
    while time.monotonic() < deadline:
        message = listener.get_message(timeout=0.1)
        if message is not None:
            out.append(json.loads(message["data"]))
            deadline = time.monotonic() + quiet
    return out


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(200)
    yield server
    server.stop()


@pytest.fixture
def use_settings(app) -> Iterator[Any]:
    """Swap the workers' settings (create_app has just configured them) and restore them afterwards."""
    from core.breakers import breakers
    from tasks.celery_app import app as celery

    original = celery.conf.devpulse_settings
    breakers.reset("webhook")

    def use(**changes: Any) -> None:
        celery.conf.devpulse_settings = dataclasses.replace(original, **changes)

    yield use
    celery.conf.devpulse_settings = original
    breakers.reset("webhook")


@pytest.fixture
def webhook(use_settings, receiver) -> Receiver:
    use_settings(alert_webhook_url=receiver.url, alert_webhook_secret=SECRET)
    return receiver


def relay(db) -> dict[str, int]:
    from tasks.alert_delivery import relay as relay_alerts

    return relay_alerts(db)


# ----------------------------------------------------------------------------------------- the outbox record


def test_the_record_is_written_with_the_alert_and_delivered_once(pipeline_client, make_token, db, webhook):
    token = make_token("dev-1")
    batch_id = post(pipeline_client, token, error_events())
    assert wait_processed(db, batch_id) == "processed"
    [alert] = alerts(db)
    wait_for(lambda: webhook.hits, 10)
    [record] = wait_for(lambda: [r for r in notifications(db) if r.status == "delivered"], 10)
    assert str(record.batch_id) == batch_id and record.developer_id == "dev-1"
    assert [a["alert_id"] for a in record.alerts] == [str(alert.alert_id)] and record.alert_count == 1
    assert record.published_at is not None and record.webhook_delivered_at is not None and record.attempts == 0
    [payload] = webhook.payloads()
    assert payload["type"] == "devpulse.alerts" and payload["batch_id"] == batch_id
    assert payload["alerts"][0]["idempotency_key"] == f"{alert.alert_id}:1"
    assert list(webhook.accepted(SECRET)) == [f"{alert.alert_id}:1"]
    # Nothing is left for the relay: it sends nothing more.
    make_due(db)
    assert relay(db)["due"] == 0
    assert len(webhook.hits) == 1


def test_a_redis_error_after_the_commit_loses_nothing(pipeline_client, make_token, db, redis_url, webhook,
                                                       monkeypatch):
    """Today's gap: the alert committed, then the publish fails. The batch completes; the record waits; the relay
    delivers it (pub/sub and webhook) once Redis answers again."""
    import tasks.alert_delivery as delivery

    # A real client of a Redis that is not there (connection refused), as the worker sees a Redis outage.
    monkeypatch.setattr(delivery, "_redis", redis.Redis(port=closed_port(), socket_connect_timeout=1))
    token = make_token("dev-1")
    batch_id = post(pipeline_client, token, error_events())
    assert wait_processed(db, batch_id) == "processed"  # delivery never holds up nor fails the batch
    [alert] = alerts(db)
    [record] = notifications(db)
    assert (record.status, record.published_at, record.attempts) == ("pending", None, 1)
    assert "ConnectionError" in record.last_error
    assert webhook.hits == []

    monkeypatch.setattr(delivery, "_redis", None)  # Redis is back
    listener = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe("devpulse:alerts:dev-1")
    try:
        wait_for(lambda: listener.get_message(timeout=0.1) is None, 2)  # subscribed
        make_due(db)
        assert relay(db) == {"due": 1, "webhooks_delivered": 1}
        message = wait_for(lambda: listener.get_message(timeout=0.5), 5)
    finally:
        listener.close()
    assert json.loads(message["data"])["alert_id"] == str(alert.alert_id)
    assert webhook.keys() == [f"{alert.alert_id}:1"]
    [record] = notifications(db)
    assert record.status == "delivered"


# ------------------------------------------------------------------------------------------ retries, errors


def test_failures_back_off_then_dead_letter_and_developers_see_generic_errors(pipeline_client, make_token, db,
                                                                             use_settings, monkeypatch):
    import core.retry
    from core.breakers import breakers

    receiver = Receiver(500)
    try:
        use_settings(alert_webhook_url=receiver.url, alert_webhook_secret=SECRET, outbox_max_attempts=4)
        bounds: list[float] = []
        uniform = core.retry.random.uniform

        def recording_uniform(a: float, b: float) -> float:
            bounds.append(b)
            return uniform(a, b)

        monkeypatch.setattr(core.retry.random, "uniform", recording_uniform)
        token = make_token("dev-1")
        batch_id = post(pipeline_client, token, error_events())
        assert wait_processed(db, batch_id) == "processed"
        wait_for(lambda: notifications(db)[0].attempts == 1, 10)  # the worker's own attempt
        for attempt in (2, 3, 4):
            make_due(db)
            relay(db)
            assert notifications(db)[0].attempts == attempt
        assert len(receiver.hits) == 4
    finally:
        receiver.stop()
    [record] = notifications(db)
    assert record.status == "dead_letter" and record.published_at is not None
    assert bounds == [2.0, 4.0, 8.0]  # exponential, full jitter (core/retry.py), then the dead letter
    # The admin view keeps the details ...
    assert "HTTPError" in record.last_error and "500" in record.last_error
    with db.session() as s:
        [admin] = s.scalars(select(AdminAlert).where(AdminAlert.kind == "webhook_failed")).all()
    [alert] = alerts(db)
    assert admin.context["notification_id"] == record.id and admin.context["alert_ids"] == [str(alert.alert_id)]
    assert "HTTP Error 500" in admin.context["error"]
    # ... the developer's view of the alert says what kind of failure it was, nothing more.
    assert [e["attempt"] for e in alert.deliveries] == [1, 2, 3, 4]
    assert {e["error"] for e in alert.deliveries} == {"the receiver answered HTTP 500"}
    assert breakers.get("webhook").current_state == "closed"  # 4 failures: below the breaker's 5


def test_unreachable_receiver_error_names_no_host(pipeline_client, make_token, db, use_settings, app):
    use_settings(alert_webhook_url=f"http://127.0.0.1:{closed_port()}/hook", alert_webhook_secret=SECRET)
    token = make_token("dev-1")
    batch_id = post(pipeline_client, token, error_events())
    assert wait_processed(db, batch_id) == "processed"
    [record] = wait_for(lambda: [r for r in notifications(db) if r.attempts], 10)
    assert "Connection refused" in record.last_error and "127.0.0.1" not in json.dumps(alerts(db)[0].deliveries)
    [entry] = alerts(db)[0].deliveries
    assert entry["error"] == "the receiver could not be reached"
    # What the API shows the developer.
    r = app.test_client().get("/api/developers/dev-1/alerts", headers=auth(token))
    shown = json.dumps(r.get_json())
    assert "Connection refused" not in shown and "127.0.0.1" not in shown and "the receiver could not" in shown


# ----------------------------------------------------------------------------------------- bursts, the cap


def debug_burst(count: int) -> list[dict[str, Any]]:
    """`count` debug sessions started a few seconds apart from 2.5 h ago, never stopped: each runs as long as the
    developer stays active (the starts themselves), i.e. to its end of the burst: many alerts from one batch."""
    start = now() - timedelta(minutes=150)
    step = timedelta(minutes=148) / count
    return [event("debug.start", start + i * step, debug_session_id=f"dbg-{i}") for i in range(count)]


def test_a_burst_is_one_request_per_developer_and_batch(pipeline_client, make_token, db, webhook, use_settings):
    use_settings(alert_webhook_url=webhook.url, alert_webhook_secret=SECRET, alert_notify_max_per_hour=10_000)
    token = make_token("dev-1")
    batch_id = post(pipeline_client, token, debug_burst(999))
    assert wait_processed(db, batch_id, timeout=90) == "processed"
    found = [a for a in alerts(db) if not a.stale]
    assert len(found) > 100, len(found)
    wait_for(lambda: webhook.hits, 15)
    [payload] = webhook.payloads()  # one request, however many alerts
    assert sorted(webhook.keys()) == sorted(f"{a.alert_id}:{a.version}" for a in found)
    assert payload["withheld"] == 0 and len(webhook.accepted(SECRET)) == len(found)


def test_the_rate_cap_sends_the_most_severe_and_withholds_the_rest(pipeline_client, make_token, db, webhook,
                                                                   use_settings, redis_url):
    use_settings(alert_webhook_url=webhook.url, alert_webhook_secret=SECRET, alert_notify_max_per_hour=5)
    token = make_token("dev-1")
    listener = redis.Redis.from_url(redis_url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe("devpulse:alerts:dev-1")
    try:
        batch_id = post(pipeline_client, token, debug_burst(200))
        assert wait_processed(db, batch_id, timeout=60) == "processed"
        wait_for(lambda: webhook.hits, 10)
        published = drain(listener)
    finally:
        listener.close()
    found = [a for a in alerts(db) if not a.stale]
    severities = sorted((a.severity for a in found), key=["low", "medium", "high", "critical"].index, reverse=True)
    [payload] = webhook.payloads()
    assert len(payload["alerts"]) == 5 and payload["withheld"] == len(found) - 5
    assert [i["alert"]["severity"] for i in payload["alerts"]] == severities[:5]
    assert len(published) == 5  # the SSE stream is capped alike
    # Everything is stored and listed; the budget of the hour is spent: the next batch's news is withheld.
    post_id = post(pipeline_client, token, error_events())
    assert wait_processed(db, post_id) == "processed"
    assert any(a.pattern == "excessive_errors" for a in alerts(db))
    assert len(notifications(db)) == 1 and len(webhook.hits) == 1
    with db.session() as s:
        withheld = s.scalars(select(AuditRecord).where(AuditRecord.step == "alerts_withheld")
                             .order_by(AuditRecord.id)).all()
    assert [w.details["withheld"] for w in withheld] == [len(found) - 5, 1]


def test_two_developers_in_one_relay_pass(pipeline_client, make_token, db, webhook, monkeypatch):
    """The relay delivers many records in one pass, each developer's alerts in their own request."""
    import tasks.alert_delivery as delivery

    monkeypatch.setattr(delivery, "_redis", redis.Redis(port=closed_port(), socket_connect_timeout=1))
    ids = [post(pipeline_client, make_token(dev), error_events(), developer_id=dev) for dev in ("dev-1", "dev-2")]
    for batch_id in ids:
        assert wait_processed(db, batch_id) == "processed"
    monkeypatch.setattr(delivery, "_redis", None)
    make_due(db)
    assert relay(db) == {"due": 2, "webhooks_delivered": 2}
    assert sorted(p["developer_id"] for p in webhook.payloads()) == ["dev-1", "dev-2"]
    assert all(len(p["alerts"]) == 1 for p in webhook.payloads())
