"""Getting alerts to the developer: Redis pub/sub for the SSE stream, and the optional signed webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

import pybreaker
import redis

from models.admin_alerts import raise_admin_alert
from models.alerts import alert_channel, record_delivery
from models.breakers import breakers
from tasks.celery_app import app
from tasks.context import DevpulseTask, database, settings

log = logging.getLogger("devpulse.alerts")

SIGNATURE_HEADER = "X-Devpulse-Signature"
WEBHOOK_MAX_RETRIES = 5


_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings().redis_url, socket_connect_timeout=2, socket_timeout=2)
    return _redis


def push(alerts: list[dict[str, Any]]) -> None:
    """Publish new non-stale alerts (after the commit that stored them) and queue the webhook."""
    for alert in alerts:
        _client().publish(alert_channel(alert["developer_id"]), json.dumps(alert))
    if settings().alert_webhook_url:
        for alert in alerts:
            deliver_webhook.apply_async(args=(alert["alert_id"],), kwargs={"alert": alert},
                                        task_id=f"{alert['batch_id']}.webhook.{alert['alert_id']}")


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def _post(url: str, body: bytes, secret: str) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret), "User-Agent": "devpulse-alerts/1",
    })
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


@app.task(bind=True, base=DevpulseTask, name="devpulse.deliver_alert_webhook", queue="danger",
          max_retries=WEBHOOK_MAX_RETRIES)
def deliver_webhook(self: DevpulseTask, alert_id: str, alert: dict[str, Any]) -> str:
    """POST the alert, signed; retried with backoff and jitter behind the `webhook` breaker."""
    cfg = settings()
    body = json.dumps({"type": "devpulse.alert", "alert": alert}, sort_keys=True).encode("utf-8")
    breaker = breakers.get("webhook", fail_max=5, reset_timeout=30)
    attempt = self.request.retries + 1
    entry: dict[str, Any] = {"channel": "webhook", "attempt": attempt, "at": datetime.now(UTC).isoformat()}
    try:
        status = breaker.call(_post, cfg.alert_webhook_url, body, cfg.alert_webhook_secret)
        entry.update(outcome="delivered", status=status)
    except (pybreaker.CircuitBreakerError, urllib.error.URLError, OSError, ValueError) as exc:
        entry.update(outcome="failed", error=f"{type(exc).__name__}: {exc}"[:300])
    with database().transaction() as session:
        record_delivery(session, uuid.UUID(alert_id), entry)
        if entry["outcome"] == "failed" and self.request.retries >= WEBHOOK_MAX_RETRIES:
            raise_admin_alert(session, "webhook_failed",
                              f"Alert {alert_id} could not be delivered to the webhook after {attempt} attempts",
                              batch_id=alert.get("batch_id"), correlation_id=alert.get("correlation_id"),
                              context={"alert_id": alert_id, "step": "webhook", "attempt": attempt,
                                       "error": entry.get("error")})
    if entry["outcome"] == "failed":
        if self.request.retries < WEBHOOK_MAX_RETRIES:
            raise self.retry(countdown=random.uniform(0, min(300.0, 2.0 * (2**self.request.retries))))
        return "failed"
    return "delivered"
