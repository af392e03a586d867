"""Administrative alerts: a logged error, a row in `admin_alerts`, and ADMIN_ALERT_WEBHOOK_URL when set."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.request
import uuid
from typing import Any

import pybreaker
from sqlalchemy import event
from sqlalchemy.orm import Session

from models.breakers import breakers
from models.tables import AdminAlert

log = logging.getLogger("devpulse.admin_alerts")


def _post_webhook(url: str, payload: dict[str, Any]) -> None:
    body = json.dumps(payload, default=str).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "devpulse-admin/1"})
    try:
        breakers.get("admin_webhook", fail_max=3, reset_timeout=60).call(
            lambda: urllib.request.urlopen(request, timeout=3).close()
        )
    except (pybreaker.CircuitBreakerError, OSError, ValueError) as exc:
        log.warning("admin alert webhook failed: %s", exc)


def notify_webhook(payload: dict[str, Any]) -> None:
    """Fire-and-forget: an alert about a failure must never add a failure (or a wait) of its own."""
    url = os.environ.get("ADMIN_ALERT_WEBHOOK_URL", "")
    if url:
        threading.Thread(target=_post_webhook, args=(url, payload), daemon=True).start()


_last_sent: dict[str, float] = {}
_WEBHOOK_EVERY_SECONDS = 30.0


def log_admin_alert(kind: str, message: str, **context: Any) -> None:
    """For when the database itself is what failed: the log line and the webhook still go out.

    Every occurrence is logged; the webhook hears of each kind at most every 30 s, so an outage
    that fails every request does not become a flood of its own.
    """
    log.error("admin alert: %s", message, extra={"alert_kind": kind, "context": context})
    now = time.monotonic()
    if now - _last_sent.get(kind, -_WEBHOOK_EVERY_SECONDS) >= _WEBHOOK_EVERY_SECONDS:
        _last_sent[kind] = now
        notify_webhook({"kind": kind, "message": message, "context": context})


def raise_admin_alert(
    session: Session, kind: str, message: str, *, batch_id: uuid.UUID | str | None = None,
    correlation_id: str | None = None, context: dict[str, Any] | None = None,
) -> AdminAlert:
    bid = uuid.UUID(str(batch_id)) if batch_id is not None else None
    ctx = json.loads(json.dumps(context or {}, default=str))
    alert = AdminAlert(kind=kind, message=message, batch_id=bid, correlation_id=correlation_id, context=ctx)
    session.add(alert)
    session.flush()
    log.error("admin alert: %s", message,
              extra={"alert_kind": kind, "batch_id": str(bid) if bid else None, "correlation_id": correlation_id,
                     "context": ctx})
    payload = {"kind": kind, "message": message, "batch_id": str(bid) if bid else None,
               "correlation_id": correlation_id, "context": ctx}
    # Only announce what was committed.
    event.listen(session, "after_commit", lambda _s: notify_webhook(payload), once=True)
    return alert
