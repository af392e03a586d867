"""Administrative alerts: a logged error, a row in `admin_alerts`, and the admin webhook (core/webhooks.py)."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from core.webhooks import admin_notifier
from models.tables import AdminAlert

log = logging.getLogger("devpulse.admin_alerts")


def log_admin_alert(kind: str, message: str, **context: Any) -> None:
    """For when the database itself is what failed: the log line and the webhook still go out.

    Every occurrence is logged; the webhook hears of each kind at most every 30 s, so an outage
    that fails every request does not become a flood of its own.
    """
    log.error("admin alert: %s", message, extra={"alert_kind": kind, "context": context})
    admin_notifier.notify_throttled(kind, {"kind": kind, "message": message, "context": context})


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
    event.listen(session, "after_commit", lambda _s: admin_notifier.notify(payload), once=True)
    return alert
