"""Administrative alerts: a logged error, a row in `admin_alerts`, and the webhook when configured."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from sqlalchemy.orm import Session

from models.tables import AdminAlert

log = logging.getLogger("devpulse.admin_alerts")


def raise_admin_alert(
    session: Session, kind: str, message: str, *, batch_id: uuid.UUID | str | None = None,
    correlation_id: str | None = None, context: dict[str, Any] | None = None,
) -> AdminAlert:
    bid = uuid.UUID(str(batch_id)) if batch_id is not None else None
    alert = AdminAlert(kind=kind, message=message, batch_id=bid, correlation_id=correlation_id,
                       context=json.loads(json.dumps(context or {}, default=str)))
    session.add(alert)
    session.flush()
    log.error("admin alert: %s", message,
              extra={"event": "admin_alert", "kind": kind, "batch_id": str(bid) if bid else None,
                     "correlation_id": correlation_id, "context": context or {}})
    return alert
