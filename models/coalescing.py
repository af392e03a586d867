"""Coalescing: one run of a job covers every batch of the developer that is waiting for that job.

When several batches of one developer are queued (a backlog, a burst, an offline queue draining), the first
run of a job takes the developer's lock, recomputes the union of their ranges once, and marks the job of the
others as done (`batch_jobs.covered_by`); their own tasks then find nothing left to do. Like the invalidation
log of a continuous aggregate: results stay exact (recomputed from stored events), the work is done once.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import and_, exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.tables import Batch, BatchJob, BatchStatus

# At most this many waiting batches are covered by one run (bounds the work of one transaction).
MAX_COVERED = 50


def job_covered_by(session: Session, developer_id: str, batch_id: uuid.UUID, job: str) -> uuid.UUID | None:
    """The batch whose run of `job` already covered this batch, if any."""
    return session.execute(
        select(BatchJob.covered_by).where(BatchJob.developer_id == developer_id, BatchJob.batch_id == batch_id,
                                          BatchJob.job == job)
    ).scalar_one_or_none()


def covered_by(session: Session, batch: Batch, job: str) -> uuid.UUID | None:
    return job_covered_by(session, batch.developer_id, batch.batch_id, job)


def waiting_batches(session: Session, batch: Batch, job: str) -> list[Batch]:
    """Other in-flight batches of the developer whose `job` has neither succeeded nor been covered."""
    settled = exists().where(and_(BatchJob.developer_id == Batch.developer_id, BatchJob.batch_id == Batch.batch_id,
                                  BatchJob.job == job,
                                  (BatchJob.status == "ok") | BatchJob.covered_by.is_not(None)))
    return list(session.execute(
        select(Batch).where(Batch.developer_id == batch.developer_id, Batch.batch_id != batch.batch_id,
                            Batch.status.in_(BatchStatus.in_flight()), Batch.first_ts.is_not(None), ~settled)
        .order_by(Batch.received_at).limit(MAX_COVERED)
    ).scalars())


def mark_covered(session: Session, batches: list[Batch], job: str, by: Batch) -> None:
    """Record that `by`'s run of `job` did these batches' work (their tasks will find nothing left to do)."""
    if not batches:
        return
    # Covered for the batch's current dispatch attempt: a later replay of it (a newer attempt) runs the job itself.
    rows = [{"developer_id": b.developer_id, "batch_id": b.batch_id, "job": job, "status": "ok", "attempts": 0,
             "covered_by": by.batch_id, "finished_at": func.clock_timestamp(), "duration_ms": 0,
             "dispatch_attempt": b.dispatch_count} for b in batches]
    stmt = insert(BatchJob).values(rows)
    session.execute(stmt.on_conflict_do_update(
        index_elements=[BatchJob.developer_id, BatchJob.batch_id, BatchJob.job],
        set_={"status": "ok", "covered_by": stmt.excluded.covered_by, "finished_at": func.clock_timestamp(),
              "error": None, "dispatch_attempt": stmt.excluded.dispatch_attempt, "lease_expires_at": None},
    ))


def merge_spans(spans: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Overlapping or touching [start, end] spans merged, sorted."""
    merged: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
