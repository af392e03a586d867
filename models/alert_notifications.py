"""The outbox of developer alerts: one record per detection run that found news, written in the same transaction
as the alert changes, and what its delivery (tasks/alert_delivery.py) records on it.

A record carries the alert documents as of that change, so a delivery retried hours later still sends what was
detected then, and every alert in it its idempotency key `<alert_id>:<version>` (the version is bumped by every
change of an alert): a receiver that keeps the keys it has seen drops repeats.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activity.danger import severity_rank
from core.retry import backoff_delay
from models.admin_alerts import raise_admin_alert
from models.batch_lifecycle import audit
from models.db import run_sql
from models.tables import AlertNotification

# The worker that wrote a record delivers it right after its commit; the relay (beat) is the safety net and
# leaves a fresh record alone for this long, so the two do not race for every record.
DELIVERY_GRACE = timedelta(seconds=5)

# The window of the per-developer rate cap.
RATE_WINDOW = timedelta(hours=1)


def idempotency_key(document: dict[str, Any]) -> str:
    """What a receiver deduplicates by: the alert and the version of it that is announced."""
    return f"{document['alert_id']}:{document['version']}"


def record_notification(session: Session, developer_id: str, batch_id: uuid.UUID, correlation_id: str,
                        documents: list[dict[str, Any]], *, max_per_hour: int) -> int | None:
    """Write the record announcing `documents` (new and escalated alerts of one run) in the caller's
    transaction; returns its id, or None when there is nothing to send.

    The per-developer rate cap: at most `max_per_hour` alerts announced per developer in any hour; the most
    severe go first, the rest are stored and listed like every alert, counted as `withheld`, not pushed. The
    caller holds the developer's detection lock, so two runs cannot both spend the same budget.
    """
    if not documents:
        return None
    used = session.execute(select(func.coalesce(func.sum(AlertNotification.alert_count), 0)).where(
        AlertNotification.developer_id == developer_id,
        AlertNotification.created_at > func.now() - RATE_WINDOW)).scalar_one()
    budget = max(0, max_per_hour - int(used))
    ordered = sorted(documents, key=lambda d: -severity_rank(d["severity"]))
    sent, withheld = ordered[:budget], len(ordered) - min(budget, len(ordered))
    if withheld:
        audit(session, "alerts_withheld", batch_id=batch_id, correlation_id=correlation_id,
              developer_id=developer_id, withheld=withheld, sent=len(sent), max_per_hour=max_per_hour)
    if not sent:
        return None
    record = AlertNotification(developer_id=developer_id, batch_id=batch_id, correlation_id=correlation_id,
                               alerts=sent, alert_count=len(sent), withheld=withheld,
                               next_attempt_at=datetime.now(UTC) + DELIVERY_GRACE)
    session.add(record)
    session.flush()
    return record.id


def claim(session: Session, notification_id: int, *, due_only: bool = False) -> AlertNotification | None:
    """Lock one pending record; None if another process holds it, it is no longer pending, or (`due_only`, the
    relay) its backoff still runs."""
    stmt = select(AlertNotification).where(AlertNotification.id == notification_id,
                                           AlertNotification.status == "pending")
    if due_only:
        stmt = stmt.where(AlertNotification.next_attempt_at <= func.now())
    return session.execute(stmt.with_for_update(skip_locked=True)).scalar_one_or_none()


def due_ids(session: Session, limit: int = 50) -> list[int]:
    """The pending records whose time has come, oldest first (the relay claims each on its own)."""
    return list(session.execute(
        select(AlertNotification.id)
        .where(AlertNotification.status == "pending", AlertNotification.next_attempt_at <= func.now())
        .order_by(AlertNotification.next_attempt_at, AlertNotification.id)
        .limit(limit)
    ).scalars())


def mark_published(record: AlertNotification, *, webhook: bool) -> None:
    record.published_at = datetime.now(UTC)
    if not webhook:
        record.status = "delivered"


def mark_webhook_delivered(session: Session, record: AlertNotification, status: int) -> None:
    record.webhook_delivered_at = datetime.now(UTC)
    record.status = "delivered"
    record.last_error = None
    add_delivery_entry(session, record, {"channel": "webhook", "attempt": record.attempts + 1,
                                         "outcome": "delivered", "status": status})


def add_delivery_entry(session: Session, record: AlertNotification, entry: dict[str, Any]) -> None:
    """Append one entry to the delivery log of every alert of the record, in one statement (a burst's record
    holds many alerts). This log is shown to developers: it never holds internal error text."""
    entry = {**entry, "at": datetime.now(UTC).isoformat()}
    run_sql(session, "UPDATE alerts SET deliveries = deliveries || jsonb_build_array(%(entry)s::jsonb)"
                     " WHERE alert_id = ANY(%(ids)s::uuid[])",
            {"entry": json.dumps(entry), "ids": [d["alert_id"] for d in record.alerts]})


def record_failure(session: Session, notification_id: int, *, channel: str, error: str, public_error: str,
                   max_attempts: int, base: float, cap: float) -> str:
    """Count a failed delivery attempt: backoff (core/retry.py), and after `max_attempts` a dead letter and an
    admin alert. `error` (exception text, hostnames) goes to the record and the admin alert; the alerts'
    delivery log, which developers read, gets `public_error` only."""
    record = session.execute(select(AlertNotification).where(AlertNotification.id == notification_id)
                             .with_for_update()).scalar_one_or_none()
    if record is None or record.status != "pending":
        return "gone"
    record.attempts += 1
    record.last_error = f"{channel}: {error}"[:2000]
    if channel == "webhook":
        add_delivery_entry(session, record, {"channel": "webhook", "attempt": record.attempts, "outcome": "failed",
                                             "error": public_error})
    if record.attempts >= max_attempts:
        record.status = "dead_letter"
        raise_admin_alert(session, "webhook_failed" if channel == "webhook" else "alert_publish_failed",
                          f"Alert notification {record.id} ({record.alert_count} alert(s) of developer "
                          f"{record.developer_id}) could not be delivered ({channel}) after {record.attempts} "
                          f"attempts: {error}",
                          batch_id=record.batch_id, correlation_id=record.correlation_id,
                          context={"developer_id": record.developer_id, "notification_id": record.id,
                                   "alert_ids": [d["alert_id"] for d in record.alerts][:20], "step": channel,
                                   "attempt": record.attempts, "error": error[:500]})
        return "dead_letter"
    delay = backoff_delay(record.attempts - 1, base=base, cap=cap)
    record.next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
    return "retry"


def requeue_dead_letters(session: Session, *, limit: int, dry_run: bool = False) -> list[int]:
    """Make dead-lettered records pending again, due now, with a fresh attempt count (the receiver was fixed).
    Alerts already delivered on a channel are not sent there again (published_at / webhook_delivered_at)."""
    ids = list(session.execute(
        select(AlertNotification.id).where(AlertNotification.status == "dead_letter")
        .order_by(AlertNotification.id).limit(limit).with_for_update(skip_locked=True)).scalars())
    if ids and not dry_run:
        run_sql(session, "UPDATE alert_notifications SET status = 'pending', attempts = 0, next_attempt_at = now()"
                         " WHERE id = ANY(%(ids)s)", {"ids": ids})
    return ids
