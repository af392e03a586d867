"""Batch lifecycle and per-job state, kept in PostgreSQL (Redis may lose everything): transitions and reads.

persisted -> dispatched -> processing -> processed | processed_with_errors | failed.
Every transition is a conditional UPDATE, so a late or repeated message can
never move a batch backwards. A batch is identified by (developer_id, batch_id):
a batch id is unique per developer only.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import CursorResult, and_, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from core.tracing import trace_fields
from models.db import run_sql
from models.tables import AuditRecord, Batch, BatchJob, BatchStatus, QuarantinedEvent

# A batch's chord runs these jobs in parallel, then its callback.
HEADER_JOBS = ("aggregate", "normalize", "detect_danger")


def now() -> datetime:
    return datetime.now(UTC)


def audit(session: Session, step: str, *, batch_id: uuid.UUID | str | None, correlation_id: str,
          is_replay: bool = False, **details: Any) -> None:
    session.execute(insert(AuditRecord).values(
        step=step, batch_id=uuid.UUID(str(batch_id)) if batch_id else None, correlation_id=correlation_id,
        is_replay=is_replay, details={**details, **trace_fields()},
    ))


def _is(developer_id: str, batch_id: uuid.UUID) -> ColumnElement[bool]:
    """The WHERE clause of one developer's batch."""
    return and_(Batch.developer_id == developer_id, Batch.batch_id == batch_id)


def job_finished(session: Session, developer_id: str, batch_id: uuid.UUID, job: str, ok: bool, duration_ms: int,
                 error: str | None = None, *, attempt: int) -> bool:
    """Record a job run's end; False (nothing written) when a newer dispatch attempt of the batch exists."""
    newest = select(Batch.dispatch_count).where(_is(developer_id, batch_id)).scalar_subquery()
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]  # an UPDATE's result has rowcount
        update(BatchJob)
        .where(BatchJob.developer_id == developer_id, BatchJob.batch_id == batch_id, BatchJob.job == job,
               BatchJob.dispatch_attempt == attempt, newest <= attempt)
        .values(status="ok" if ok else "failed", finished_at=func.clock_timestamp(), duration_ms=duration_ms,
                error=error, lease_expires_at=None)
    )
    return bool(result.rowcount)


@dataclass(frozen=True)
class JobStart:
    """What `start_job` found: whether the run's dispatch attempt is still the batch's latest (`current`), the
    batch whose run already covered this job, and how many runs before this one lost their worker in a row."""

    current: bool
    covered_by: uuid.UUID | None = None
    lost_runs: int = 0


# The bookkeeping of a job, one round trip each. As separate ORM statements (batch processing, job running,
# trail, covered?, then job ok, trail) it took about 15% of the worker's CPU samples (bench/profile.py). The
# statements run in order: the first waits for the batch's row lock, held by a dispatch until it commits (its
# messages may arrive first), before anything is read or written, so the trail keeps `dispatched` before
# `job_started` and a run never judges its attempt by a dispatch count that is being replaced. (The header jobs
# of a batch take the lock in turn, for a few milliseconds each; the lock is the one the UPDATE takes anyway.)
# A run of an older dispatch attempt (its messages came back after the batch was dispatched again) writes
# nothing. (A run of a newer attempt than the committed count is a publish whose commit was lost: it runs, and
# the relay then finds its record served, models/outbox.py already_served.) The job's lease starts here; a run
# that finds the previous one still `running` (neither finished nor retried: its worker died) counts a lost run.
_START_JOB = """
SET LOCAL synchronous_commit TO OFF;
SELECT 1 FROM batches WHERE developer_id = %(developer)s AND batch_id = %(batch)s FOR NO KEY UPDATE;
UPDATE batches SET status = 'processing', processing_started_at = clock_timestamp(), updated_at = now()
WHERE developer_id = %(developer)s AND batch_id = %(batch)s AND status IN ('persisted', 'dispatched')
  AND dispatch_count <= %(attempt)s;
WITH current_attempt AS (
  SELECT 1 FROM batches
  WHERE developer_id = %(developer)s AND batch_id = %(batch)s AND dispatch_count <= %(attempt)s
), job AS (
  INSERT INTO batch_jobs (developer_id, batch_id, job, status, attempts, task_id, is_replay, started_at,
                          dispatch_attempt, lease_expires_at, retries, lost_runs)
  SELECT %(developer)s, %(batch)s, %(job)s, 'running', 1, %(task)s, %(replay)s, clock_timestamp(), %(attempt)s,
         clock_timestamp() + make_interval(secs => %(lease)s), %(retries)s, 0
  FROM current_attempt
  ON CONFLICT (developer_id, batch_id, job) DO UPDATE SET status = 'running', attempts = batch_jobs.attempts + 1,
    task_id = EXCLUDED.task_id, is_replay = EXCLUDED.is_replay, started_at = EXCLUDED.started_at,
    finished_at = NULL, duration_ms = NULL, error = NULL, dispatch_attempt = EXCLUDED.dispatch_attempt,
    lease_expires_at = EXCLUDED.lease_expires_at, retries = EXCLUDED.retries,
    lost_runs = CASE WHEN batch_jobs.status <> 'running' THEN 0
                     WHEN batch_jobs.task_id = EXCLUDED.task_id AND batch_jobs.retries < EXCLUDED.retries
                       THEN batch_jobs.lost_runs
                     ELSE batch_jobs.lost_runs + 1 END
  RETURNING covered_by, lost_runs
), trail AS (
  INSERT INTO audit_log (correlation_id, batch_id, step, is_replay, details)
  SELECT %(correlation)s, %(batch)s, 'job_started', %(replay)s, %(details)s::jsonb FROM job
)
SELECT covered_by::text, lost_runs FROM job
"""

_FINISH_JOB = """
WITH done AS (
  UPDATE batch_jobs SET status = %(status)s, finished_at = clock_timestamp(), duration_ms = %(ms)s, error = %(error)s,
                        lease_expires_at = NULL
  WHERE developer_id = %(developer)s AND batch_id = %(batch)s AND job = %(job)s AND dispatch_attempt = %(attempt)s
    AND (SELECT dispatch_count FROM batches
         WHERE developer_id = %(developer)s AND batch_id = %(batch)s) <= %(attempt)s
  RETURNING 1
), trail AS (
  INSERT INTO audit_log (correlation_id, batch_id, step, is_replay, details)
  SELECT %(correlation)s, %(batch)s, %(step)s, %(replay)s, %(details)s::jsonb FROM done
)
SELECT count(*) FROM done
"""

_RENEW_LEASE = """
SET LOCAL synchronous_commit TO OFF;
UPDATE batch_jobs SET lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE developer_id = %(developer)s AND batch_id = %(batch)s AND job = %(job)s AND dispatch_attempt = %(attempt)s
  AND status = 'running'
"""


def start_job(session: Session, developer_id: str, batch_id: uuid.UUID, job: str, *, task_id: str | None,
              is_replay: bool, correlation_id: str, attempt: int, retries: int = 0,
              lease_seconds: float = 20.0) -> JobStart:
    """A job run of dispatch attempt `attempt` begins: the batch is `processing`, the job `running` with a lease of
    `lease_seconds`, the trail says so. Nothing is written when a newer attempt exists (`current` is False).

    This transaction records progress only: its commit need not wait for the WAL to reach the disk. A crash
    loses at most a "running", which the task's retry or the sweeper rewrites; every transaction that stores
    work stays fully durable. processing_started_at is clock_timestamp(), not now(): the header jobs wait here
    for each other's row lock, and now() (the start of a transaction) would let a job that waited longer
    appear to start before the batch began processing."""
    details = {"developer_id": developer_id, "job": job, "task_id": task_id, "attempt": attempt, "retries": retries,
               **trace_fields()}
    rows = run_sql(session, _START_JOB, {"developer": developer_id, "batch": str(batch_id), "job": job,
                                      "task": task_id, "replay": is_replay, "correlation": correlation_id,
                                      "attempt": attempt, "retries": retries, "lease": lease_seconds,
                                      "details": json.dumps(details)})
    if not rows:
        return JobStart(current=False)
    covered, lost_runs = rows[0]
    return JobStart(current=True, covered_by=uuid.UUID(covered) if covered else None, lost_runs=int(lost_runs))


def finish_job(session: Session, developer_id: str, batch_id: uuid.UUID, job: str, *, duration_ms: int,
               correlation_id: str, is_replay: bool, outcome: dict[str, Any], attempt: int) -> bool:
    """A job run succeeded: the job `ok`, and a `job_finished` trail record with its outcome. False (nothing
    written) when a newer dispatch attempt of the batch exists, or a newer run of the job."""
    details = {"developer_id": developer_id, "job": job, "ok": True, "duration_ms": duration_ms,
               "outcome": outcome, "attempt": attempt, **trace_fields()}
    rows = run_sql(session, _FINISH_JOB, {"developer": developer_id, "batch": str(batch_id), "job": job,
                                       "status": "ok", "ms": duration_ms, "error": None, "attempt": attempt,
                                       "correlation": correlation_id, "step": "job_finished", "replay": is_replay,
                                       "details": json.dumps(details, default=str)})
    return bool(rows and rows[0][0])


def renew_lease(session: Session, developer_id: str, batch_id: uuid.UUID, job: str, *, attempt: int,
                lease_seconds: float) -> None:
    """The heartbeat of a running job (tasks/heartbeat.py): its lease runs `lease_seconds` from now."""
    run_sql(session, _RENEW_LEASE, {"developer": developer_id, "batch": str(batch_id), "job": job,
                                    "attempt": attempt, "lease": lease_seconds})


def complete_batch(session: Session, developer_id: str, batch_id: uuid.UUID, results: list[dict[str, Any]],
                   correlation_id: str, is_replay: bool, *, attempt: int) -> str | None:
    """The chord callback's effect for dispatch attempt `attempt`. Idempotent: a second run with the same results
    changes nothing, and the callback of an older attempt never overwrites the outcome of a newer one.

    Returns the new status, or None when nothing changed.
    """
    batch = session.execute(select(Batch).where(_is(developer_id, batch_id)).with_for_update()).scalar_one_or_none()
    if batch is None or batch.dispatch_count > attempt:
        return None
    failures = [r for r in results if isinstance(r, dict) and not r.get("ok")]
    status = BatchStatus.PROCESSED_WITH_ERRORS if failures else BatchStatus.PROCESSED
    error = "; ".join(f"{r.get('job')}: {r.get('error')}" for r in failures) or None
    if batch.status == status and batch.last_error == error and batch.completed_at is not None:
        return None
    batch.status = status
    batch.last_error = error
    batch.completed_at = now()
    batch.updated_at = now()
    audit(session, "completed", batch_id=batch_id, correlation_id=correlation_id, is_replay=is_replay,
          developer_id=developer_id, status=status, failed_jobs=[r.get("job") for r in failures], errors=error)
    return status


def fail_batch(session: Session, developer_id: str, batch_id: uuid.UUID, error: str, correlation_id: str,
               is_replay: bool, *, attempt: int) -> bool:
    """A hard failure of the canvas (callback crashed, time limit) of dispatch attempt `attempt`: recorded, never
    over a completed run nor over a newer attempt."""
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]  # an UPDATE's result has rowcount
        update(Batch)
        .where(_is(developer_id, batch_id), Batch.status.in_((BatchStatus.PERSISTED, *BatchStatus.in_flight())),
               Batch.dispatch_count <= attempt)
        .values(status=BatchStatus.FAILED, last_error=error[:2000], completed_at=func.now(), updated_at=func.now())
    )
    if result.rowcount:
        audit(session, "failed", batch_id=batch_id, correlation_id=correlation_id, is_replay=is_replay,
              developer_id=developer_id, error=error[:2000])
    return bool(result.rowcount)


# A failure record names at most this many of the events involved (and counts them all).
MAX_LISTED_EVENTS = 100

_FAILURE_STATE = """
SELECT b.status, b.accepted, b.dispatch_count, b.replay_count,
       (SELECT array_agg(e.event_id::text ORDER BY e.seq) FROM (
          SELECT event_id, seq FROM raw_events
          WHERE developer_id = %(developer)s AND batch_id = %(batch)s ORDER BY seq LIMIT %(limit)s) e),
       (SELECT count(DISTINCT q.event_id) FROM quarantined_events q
        WHERE q.developer_id = %(developer)s AND q.batch_id = %(batch)s AND q.released_at IS NULL)
FROM batches b WHERE b.developer_id = %(developer)s AND b.batch_id = %(batch)s
"""


def failure_state(session: Session, developer_id: str, batch_id: uuid.UUID) -> dict[str, Any]:
    """What a failure record says about the batch it happened to: the events involved (the batch's stored
    events, the first MAX_LISTED_EVENTS ids in batch order, and their count) and its processing state."""
    rows = run_sql(session, _FAILURE_STATE, {"developer": developer_id, "batch": str(batch_id),
                                             "limit": MAX_LISTED_EVENTS})
    if not rows:
        return {"event_ids": [], "event_count": 0, "state": None}
    status, accepted, dispatches, replays, event_ids, quarantined = rows[0]
    return {"event_ids": list(event_ids or []), "event_count": accepted,
            "state": {"batch_status": status, "dispatch_count": dispatches, "replay_count": replays,
                      "quarantined_events": quarantined}}


def find_batch(session: Session, developer_id: str, batch_id: uuid.UUID, *, lock: bool = False) -> Batch | None:
    """One developer's batch (a batch id is unique per developer only)."""
    return session.get(Batch, (developer_id, batch_id), with_for_update=lock or None)


def batch_owners(session: Session, batch_id: uuid.UUID) -> list[str]:
    """The developers who own a batch with this id, sorted (admins and operators look a batch up by id alone)."""
    return list(session.execute(
        select(Batch.developer_id).where(Batch.batch_id == batch_id).order_by(Batch.developer_id)).scalars())


def batch_with_jobs(session: Session, developer_id: str,
                    batch_id: uuid.UUID) -> tuple[Batch, list[BatchJob], int] | None:
    """A developer's batch, its per-job rows (by job name) and how many of its events are quarantined."""
    batch = find_batch(session, developer_id, batch_id)
    if batch is None:
        return None
    jobs = session.execute(select(BatchJob).where(BatchJob.developer_id == developer_id, BatchJob.batch_id == batch_id)
                           .order_by(BatchJob.job)).scalars()
    quarantined = session.execute(
        select(func.count(QuarantinedEvent.event_id.distinct()))
        .where(QuarantinedEvent.developer_id == developer_id, QuarantinedEvent.batch_id == batch_id,
               QuarantinedEvent.released_at.is_(None))
    ).scalar_one()
    return batch, list(jobs), quarantined
