"""Getting alerts to the developer: Redis pub/sub for the SSE stream, and the optional signed webhook."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

import pybreaker
import redis

from core.breakers import breakers
from core.retry import backoff_delay
from core.webhooks import post_json
from models.admin_alerts import raise_admin_alert
from models.alerts import alert_channel, record_delivery
from tasks.celery_app import app
from tasks.context import DevpulseTask, database, settings

log = logging.getLogger("devpulse.alerts")

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
        status = breaker.call(post_json, cfg.alert_webhook_url, body, secret=cfg.alert_webhook_secret,
                              user_agent="devpulse-alerts/1")
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
            raise self.retry(countdown=backoff_delay(self.request.retries, base=2.0, cap=300.0))
        return "failed"
    return "delivered"
