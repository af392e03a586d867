"""Getting alerts to the developer from their notification outbox (models/alert_notifications.py): each alert on
the developer's Redis pub/sub channel (the SSE stream), and all alerts of a record in one signed webhook request.

Three ways a record is delivered, all through the same two steps (`publish`, then `post_webhook`), each claiming
the record with FOR UPDATE SKIP LOCKED and checking what is still to do: the detection task right after its commit
(`push`: publish, then the webhook task), that task, and the relay (beat) for whatever a crash, a Redis error or a
failing receiver left pending, with backoff (core/retry.py) and finally a dead letter and an admin alert.
Delivery is at least once (a crash after a send and before its commit repeats it): every alert carries its
idempotency key.
"""

from __future__ import annotations

import json
import logging
import urllib.error

import pybreaker
import redis

from core.breakers import breakers
from core.webhooks import post_json, public_reason
from models.alert_notifications import (
    claim,
    due_ids,
    idempotency_key,
    mark_published,
    mark_webhook_delivered,
    record_failure,
)
from models.alerts import alert_channel
from models.db import Database
from models.tables import AlertNotification
from tasks.celery_app import app
from tasks.context import DevpulseTask, database, settings

log = logging.getLogger("devpulse.alerts")

_redis: redis.Redis | None = None


def _client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings().redis_url, socket_connect_timeout=2, socket_timeout=2)
    return _redis


def push(notification_ids: list[int]) -> None:
    """Deliver the records the detection job has just committed: publish now, hand the webhook to its task.
    Never raises: what fails here stays pending for the relay, and the batch is not held up by it."""
    db = database()
    for notification_id in notification_ids:
        try:
            if publish(db, notification_id):
                deliver_alert_notification.apply_async(args=(notification_id,),
                                                       task_id=f"alert-notification.{notification_id}")
        except Exception as exc:
            log.warning("alert notification %s left to the relay: %s: %s", notification_id, type(exc).__name__,
                        exc, extra={"step": "alert_delivery"})


def _failed(db: Database, notification_id: int, channel: str, exc: BaseException) -> str:
    cfg = settings()
    with db.transaction() as session:
        return record_failure(session, notification_id, channel=channel, error=f"{type(exc).__name__}: {exc}",
                              public_error=public_reason(exc), max_attempts=cfg.outbox_max_attempts,
                              base=cfg.outbox_base_delay_seconds, cap=cfg.outbox_max_delay_seconds)


def publish(db: Database, notification_id: int, *, due_only: bool = False) -> bool:
    """Publish the record's alerts on pub/sub unless done already (the message is the alert document, as the
    stream has always sent it). Returns True when the record still waits for its webhook."""
    webhook = bool(settings().alert_webhook_url)
    try:
        with db.transaction() as session:
            record = claim(session, notification_id, due_only=due_only)
            if record is None:
                return False
            if record.published_at is None:
                channel = alert_channel(record.developer_id)
                pipe = _client().pipeline(transaction=False)
                for document in record.alerts:
                    pipe.publish(channel, json.dumps(document))
                pipe.execute()
                mark_published(record, webhook=webhook)
            elif not webhook:
                record.status = "delivered"  # the webhook was switched off since
            return webhook and record.webhook_delivered_at is None
    except redis.RedisError as exc:
        log.warning("publishing alert notification %s failed: %s", notification_id, exc,
                    extra={"step": "alert_delivery"})
        _failed(db, notification_id, "pubsub", exc)
        return False


def webhook_body(record: AlertNotification) -> bytes:
    """One request per record (a developer's new alerts of one batch), each alert with its idempotency key."""
    return json.dumps({
        "type": "devpulse.alerts",
        "delivery_id": record.id,
        "developer_id": record.developer_id,
        "batch_id": str(record.batch_id),
        "withheld": record.withheld,
        "alerts": [{"idempotency_key": idempotency_key(d), "alert": d} for d in record.alerts],
    }, sort_keys=True).encode("utf-8")


def post_webhook(db: Database, notification_id: int, *, due_only: bool = False) -> str:
    """POST the record's alerts, signed, behind the `webhook` breaker, unless done already."""
    cfg = settings()
    try:
        with db.transaction() as session:
            record = claim(session, notification_id, due_only=due_only)
            if record is None or record.published_at is None:
                return "not_due"  # taken, done, backing off, or not yet published (the relay does both)
            if not cfg.alert_webhook_url:
                record.status = "delivered"
                return "no_webhook"
            breaker = breakers.get("webhook", fail_max=5, reset_timeout=30)
            status = breaker.call(post_json, cfg.alert_webhook_url, webhook_body(record),
                                  secret=cfg.alert_webhook_secret, user_agent="devpulse-alerts/2")
            mark_webhook_delivered(session, record, status)
        return "delivered"
    except (pybreaker.CircuitBreakerError, urllib.error.URLError, OSError, ValueError) as exc:
        log.warning("webhook delivery of alert notification %s failed: %s: %s", notification_id,
                    type(exc).__name__, exc, extra={"step": "alert_delivery"})
        return _failed(db, notification_id, "webhook", exc)


def relay(db: Database, limit: int = 50) -> dict[str, int]:
    """Deliver every due pending record (beat runs this every few seconds)."""
    with db.session() as session:
        due = due_ids(session, limit)
    delivered = 0
    for notification_id in due:
        if publish(db, notification_id, due_only=True):
            delivered += post_webhook(db, notification_id, due_only=True) == "delivered"
    return {"due": len(due), "webhooks_delivered": delivered}


@app.task(base=DevpulseTask, name="devpulse.deliver_alert_notification", ignore_result=True)
def deliver_alert_notification(notification_id: int) -> str:
    """The webhook of a record just published; a failure is counted on the record and retried by the relay."""
    return post_webhook(database(), notification_id)

