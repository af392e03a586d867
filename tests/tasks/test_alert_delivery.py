"""The signed alert webhook (tasks/alert_delivery.py `deliver_webhook`) against a real local receiver:
signature, the delivery log on the alert, retries with backoff, and the circuit breaker, on the real
PostgreSQL and Redis.

The end-to-end push (a batch through the pipeline to the webhook) lives in tests/tasks/test_danger_detection.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from models.tables import AdminAlert, Alert
from tests.support.alerts import base_time, seed
from tests.support.webhooks import Receiver


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


@pytest.fixture
def webhook_settings(app) -> Iterator[Any]:
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


def deliveries(db, alert_id: str) -> list[dict[str, Any]]:
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
