"""The transactional outbox: what still has to be handed to the broker, and with what backoff."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.retry import backoff_delay
from models.admin_alerts import raise_admin_alert
from models.batch_lifecycle import audit
from models.tables import Batch, Outbox

# A batch's own web process publishes its outbox record right after the response (app/publisher.py); the relay
# (a beat task on the workers) is the safety net. Without this grace the relay raced the web for every fresh
# record, and under load a third of the workers' CPU went into publishing chords the web would have published.
PUBLISH_GRACE = timedelta(seconds=5)


def claim(session: Session, outbox_id: int, *, due_only: bool = False) -> Outbox | None:
    """Lock one pending record; None if another process holds it or it is no longer pending.

    `due_only` (the relay): also None while its backoff runs, so a record another relay has
    just failed is not published again before its time.
    """
    stmt = select(Outbox).where(Outbox.id == outbox_id, Outbox.status == "pending")
    if due_only:
        stmt = stmt.where(Outbox.next_attempt_at <= func.now())
    return session.execute(stmt.with_for_update(skip_locked=True)).scalar_one_or_none()


def claim_due(session: Session, limit: int = 50) -> list[Outbox]:
    return list(session.execute(
        select(Outbox)
        .where(Outbox.status == "pending", Outbox.next_attempt_at <= func.now())
        .order_by(Outbox.next_attempt_at, Outbox.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).scalars())


def already_served(batch: Batch, record: Outbox) -> str | None:
    """Why publishing `record` again would only repeat work, or None.

    A publish can reach the broker while the commit that records it fails (the database dies between the two):
    the record stays pending, the relay publishes it again, and the batch would be processed twice, its
    completion recorded twice. A run that started, or a completion, after the record was written has read
    everything the record asks for (the events were committed before it), so the record is already served.
    Records of requeues and replays are written after the run they repeat, so they are never skipped.
    (processing_started_at and created_at are both the database's clock; completed_at is the worker's, so a
    replay, which always follows a completion, is judged by its processing start only.)
    """
    if (not record.is_replay and batch.completed_at is not None
            and batch.completed_at >= record.created_at):
        return f"batch already {batch.status} at {batch.completed_at.isoformat()}"
    if batch.processing_started_at is not None and batch.processing_started_at >= record.created_at:
        return f"batch already {batch.status} since {batch.processing_started_at.isoformat()}"
    return None


def lock_batch(session: Session, record: Outbox) -> Batch:
    return session.execute(
        select(Batch).where(Batch.developer_id == record.developer_id, Batch.batch_id == record.batch_id)
        .with_for_update()
    ).scalar_one()


def skip_dispatch(session: Session, record: Outbox, reason: str) -> None:
    """Close a record whose work is already done (see `already_served`), with an audit record saying why."""
    record.status = "dispatched"
    record.dispatched_at = datetime.now(UTC)
    audit(session, "dispatch_skipped", batch_id=record.batch_id, correlation_id=record.correlation_id,
          is_replay=record.is_replay, developer_id=record.developer_id, outbox_id=record.id, reason=reason)


def start_dispatch(session: Session, record: Outbox, batch: Batch | None = None) -> dict[str, Any]:
    """Move the batch to `dispatched` and build the small context every job receives.

    Done before the publish inside the same transaction: the batch row stays
    locked until commit, so a fast worker cannot mark it `processing` first.
    """
    if batch is None:
        batch = lock_batch(session, record)
    batch.status = "dispatched"
    batch.dispatched_at = datetime.now(UTC)
    batch.updated_at = datetime.now(UTC)
    batch.dispatch_count += 1
    batch.last_error = None
    return {
        "batch_id": str(batch.batch_id),
        "developer_id": batch.developer_id,
        "correlation_id": record.correlation_id,
        "received_at": batch.received_at.isoformat(),
        "event_count": batch.accepted,
        "first_ts": batch.first_ts.isoformat() if batch.first_ts else None,
        "last_ts": batch.last_ts.isoformat() if batch.last_ts else None,
        "is_replay": record.is_replay,
        "attempt": batch.dispatch_count,
    }


def finish_dispatch(session: Session, record: Outbox, task_ids: dict[str, str]) -> None:
    record.status = "dispatched"
    record.attempts += 1
    record.dispatched_at = datetime.now(UTC)
    audit(session, "dispatched", batch_id=record.batch_id, correlation_id=record.correlation_id,
          is_replay=record.is_replay, developer_id=record.developer_id, outbox_id=record.id,
          attempt=record.attempts, task_ids=task_ids)


def record_failure(session: Session, outbox_id: int, error: str, *, max_attempts: int, base: float,
                   cap: float) -> str:
    """Count a failed publish; after `max_attempts` the record is dead-lettered and an admin alert raised."""
    record = session.execute(select(Outbox).where(Outbox.id == outbox_id).with_for_update()).scalar_one_or_none()
    if record is None or record.status != "pending":
        return "gone"
    record.attempts += 1
    record.last_error = error[:2000]
    if record.attempts >= max_attempts:
        record.status = "dead_letter"
        raise_admin_alert(session, "outbox_dead_letter",
                          f"Batch {record.batch_id} could not be published after {record.attempts} attempts: {error}",
                          batch_id=record.batch_id, correlation_id=record.correlation_id,
                          context={"developer_id": record.developer_id, "outbox_id": record.id,
                                   "attempts": record.attempts, "step": "outbox_publish", "error": error[:500]})
        return "dead_letter"
    delay = backoff_delay(record.attempts - 1, base=base, cap=cap)
    record.next_attempt_at = datetime.now(UTC) + timedelta(seconds=delay)
    return "retry"


def enqueue(session: Session, developer_id: str, batch_id: uuid.UUID, correlation_id: str, *,
            is_replay: bool = False) -> int:
    """A new pending record for the developer's batch (sweeper, requeue, replay): the relay publishes it."""
    record = Outbox(developer_id=developer_id, batch_id=batch_id, correlation_id=correlation_id, is_replay=is_replay)
    session.add(record)
    session.flush()
    return record.id
