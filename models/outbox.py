"""The transactional outbox: what still has to be handed to the broker, and with what backoff."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.retry import backoff_delay
from core.tracing import current_traceparent, trace_fields
from models.admin_alerts import raise_admin_alert
from models.batch_lifecycle import audit
from models.db import run_sql
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
    return dispatch_context(batch.developer_id, batch.batch_id, record.correlation_id, batch.received_at,
                            batch.accepted, batch.first_ts, batch.last_ts, record.is_replay, batch.dispatch_count)


def dispatch_context(developer_id: str, batch_id: uuid.UUID | str, correlation_id: str, received_at: datetime,
                     accepted: int, first_ts: datetime | None, last_ts: datetime | None, is_replay: bool,
                     attempt: int) -> dict[str, Any]:
    """The small context every job of a batch's chord receives."""
    return {
        "batch_id": str(batch_id),
        "developer_id": developer_id,
        "correlation_id": correlation_id,
        "received_at": received_at.isoformat(),
        "event_count": accepted,
        "first_ts": first_ts.isoformat() if first_ts else None,
        "last_ts": last_ts.isoformat() if last_ts else None,
        "is_replay": is_replay,
        "attempt": attempt,
    }


# The web's publish of the record its own request just wrote (see start_fresh_dispatch): the same effects as
# claim + lock_batch + start_dispatch, and then finish_dispatch, as one statement each. As ORM statements they
# were a third of the web's publishing CPU.
_START_FRESH = """
WITH record AS (
  SELECT correlation_id FROM outbox
  WHERE id = %(id)s AND status = 'pending' AND NOT is_replay FOR UPDATE SKIP LOCKED
)
UPDATE batches b SET status = 'dispatched', dispatched_at = now(), updated_at = now(),
                     dispatch_count = b.dispatch_count + 1, last_error = NULL
FROM record r
WHERE b.developer_id = %(developer)s AND b.batch_id = %(batch)s::uuid
  AND b.processing_started_at IS NULL AND b.completed_at IS NULL
RETURNING r.correlation_id, b.received_at, b.accepted, b.first_ts, b.last_ts, b.dispatch_count
"""

_FINISH = """
WITH sent AS (
  UPDATE outbox SET status = 'dispatched', attempts = attempts + 1, dispatched_at = now()
  WHERE id = %(id)s RETURNING attempts
)
INSERT INTO audit_log (correlation_id, batch_id, step, is_replay, details)
SELECT %(correlation)s, %(batch)s::uuid, 'dispatched', %(replay)s,
       %(details)s::jsonb || jsonb_build_object('attempt', sent.attempts)
FROM sent
"""


def start_fresh_dispatch(session: Session, outbox_id: int, developer_id: str,
                         batch_id: uuid.UUID) -> dict[str, Any] | None:
    """`start_dispatch` for a first publish of a new batch: the context, or None when the record is taken,
    no longer pending, or its batch already began (then the general path, `claim` and `already_served`,
    decides). Locks the record and the batch row until commit, as the general path does."""
    rows = run_sql(session, _START_FRESH, {"id": outbox_id, "developer": developer_id, "batch": str(batch_id)})
    if not rows:
        return None
    correlation_id, received_at, accepted, first_ts, last_ts, attempt = rows[0]
    return dispatch_context(developer_id, batch_id, correlation_id, received_at, accepted, first_ts, last_ts,
                            False, attempt)


def finish_dispatch(session: Session, outbox_id: int, ctx: dict[str, Any], task_ids: dict[str, str]) -> None:
    """The record is dispatched; the trail says so, with the task ids to look for in Flower."""
    details = {"developer_id": ctx["developer_id"], "outbox_id": outbox_id, "task_ids": task_ids, **trace_fields()}
    run_sql(session, _FINISH, {"id": outbox_id, "correlation": ctx["correlation_id"], "batch": ctx["batch_id"],
                               "replay": bool(ctx["is_replay"]), "details": json.dumps(details)})


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
    record = Outbox(developer_id=developer_id, batch_id=batch_id, correlation_id=correlation_id, is_replay=is_replay,
                    traceparent=current_traceparent())
    session.add(record)
    session.flush()
    return record.id
