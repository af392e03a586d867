"""The batch chord: aggregate ∥ normalize ∥ detect_danger -> mark_batch_processed.

Tasks are thin: they take a batch id and a small context, open a session and
call a plain function in models/. A batch is (ctx["developer_id"], ctx["batch_id"]):
a batch id is unique per developer only. A header job never raises past its retries:
it returns {"ok": False, ...} so the callback still runs and the batch ends
`processed_with_errors` instead of hanging.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery.exceptions import ChordError, SoftTimeLimitExceeded
from sqlalchemy.orm import Session

from core.breakers import is_transient_error
from core.retry import backoff_delay
from models.admin_alerts import raise_admin_alert
from models.aggregation import aggregate_batch
from models.batch_lifecycle import (
    audit,
    complete_batch,
    fail_batch,
    failure_state,
    find_batch,
    finish_job,
    job_finished,
    start_job,
)
from models.danger_detection import detect_for_batch
from models.developer_settings import preferences
from models.normalization import normalize_batch
from models.quarantine import isolate, quarantine_batch
from models.tables import Batch
from tasks.alert_delivery import push as push_alerts
from tasks.celery_app import app
from tasks.context import DevpulseTask, database, settings, thresholds
from tasks.heartbeat import heartbeat
from tasks.telemetry import TASK_OUTCOMES, observe_completion

log = logging.getLogger("devpulse.pipeline")

JobFunction = Callable[[Session, Batch, dict[str, Any]], dict[str, Any]]


def _retry_delay(retries: int) -> float:
    # Equal jitter: with a fixed half the retries are guaranteed to span at least ~15 s (0.5+1+2+4+8), so they
    # cannot all fire inside one short database outage.
    return backoff_delay(retries, base=1.0, cap=60.0, jitter="equal")


def _log_extra(ctx: dict[str, Any], step: str, **more: Any) -> dict[str, Any]:
    return {"batch_id": ctx.get("batch_id"), "developer_id": ctx.get("developer_id"),
            "correlation_id": ctx.get("correlation_id"), "step": step, "is_replay": ctx.get("is_replay", False),
            **more}


class Superseded(Exception):
    """The batch was dispatched again while this run worked: its work is rolled back, the newer attempt's stands."""


def run_job(
    task: DevpulseTask, job: str, ctx: dict[str, Any], work: JobFunction,
    after_commit: Callable[[list[Any]], None] | None = None,
) -> dict[str, Any]:
    """Run one header job; `work` may return "error" (a partial failure, committed work kept) and
    "notify" (items for `after_commit`, run only once the work is committed).

    A run of an older dispatch attempt than the batch's latest does nothing (fenced by attempt); the run holds a
    lease, renewed by the heartbeat while it works, so a run whose worker died is found by its silence."""
    batch_id = uuid.UUID(ctx["batch_id"])
    developer_id: str = ctx["developer_id"]
    is_replay = bool(ctx.get("is_replay"))
    attempt = int(ctx["attempt"])
    db = database()
    started = time.monotonic()
    try:
        with db.transaction() as session:
            # Another batch's run already did this job's work (models/coalescing.py): done, no second transaction.
            found = start_job(session, developer_id, batch_id, job, task_id=task.request.id, is_replay=is_replay,
                              correlation_id=ctx["correlation_id"], attempt=attempt, retries=task.request.retries,
                              lease_seconds=settings().job_lease_seconds)
            covering = None if is_replay else found.covered_by
            if found.current and covering is not None:
                duration_ms = int((time.monotonic() - started) * 1000)
                finish_job(session, developer_id, batch_id, job, duration_ms=duration_ms,
                           correlation_id=ctx["correlation_id"], is_replay=is_replay,
                           outcome={"covered_by": str(covering)}, attempt=attempt)
        if not found.current:
            return _superseded(job, ctx)
        if covering is not None:
            TASK_OUTCOMES.labels(job, "ok").inc()
            return {"job": job, "ok": True, "duration_ms": duration_ms, "covered_by": str(covering)}
        if found.lost_runs >= settings().job_max_lost_runs:
            return _give_up_lost(job, ctx, found.lost_runs, started)
        with heartbeat.held(developer_id, batch_id, job, attempt), db.transaction() as session:
            batch = find_batch(session, developer_id, batch_id)
            if batch is None:
                raise LookupError(f"batch {batch_id} of developer {developer_id} does not exist")
            outcome = _work_or_quarantine(session, batch, job, ctx, work)
            error = outcome.pop("error", None)
            failed_rules = outcome.pop("failed_rules", None)
            notify = outcome.pop("notify", None)
            duration_ms = int((time.monotonic() - started) * 1000)
            # Recorded in the work's own transaction: one commit less per job on the critical path.
            if not error and not finish_job(session, developer_id, batch_id, job, duration_ms=duration_ms,
                                            correlation_id=ctx["correlation_id"], is_replay=is_replay,
                                            outcome=outcome, attempt=attempt):
                raise Superseded
        if after_commit is not None and notify:
            try:
                after_commit(notify)
            except Exception as exc:  # delivery must never block the batch
                error = "; ".join(filter(None, [error, f"delivery failed: {type(exc).__name__}: {exc}"]))
        if error:
            # The work's transaction committed what succeeded (e.g. every danger rule but the broken one).
            return _give_up(task, job, ctx, RuntimeError(error), started, committed=True, failed_rules=failed_rules)
        log.info("job %s ok", job, extra=_log_extra(ctx, job, duration_ms=duration_ms))
        TASK_OUTCOMES.labels(job, "ok").inc()
        return {"job": job, "ok": True, "duration_ms": duration_ms, **outcome}
    except Superseded:
        return _superseded(job, ctx)
    except SoftTimeLimitExceeded as exc:
        return _give_up(task, job, ctx, exc, started)
    except Exception as exc:
        if is_transient_error(exc) and task.request.retries < settings().task_max_retries:
            log.warning("job %s: transient error, retrying: %s", job, exc, extra=_log_extra(ctx, job))
            raise task.retry(exc=exc, countdown=_retry_delay(task.request.retries),
                             max_retries=settings().task_max_retries) from exc
        return _give_up(task, job, ctx, exc, started)


def _superseded(job: str, ctx: dict[str, Any]) -> dict[str, Any]:
    """This run's dispatch attempt is not the batch's latest: it changes nothing (its chord's callback neither)."""
    log.info("job %s of attempt %s superseded by a newer dispatch", job, ctx["attempt"], extra=_log_extra(ctx, job))
    TASK_OUTCOMES.labels(job, "superseded").inc()
    return {"job": job, "ok": True, "superseded": True}


def _give_up_lost(job: str, ctx: dict[str, Any], lost_runs: int, started: float) -> dict[str, Any]:
    """The job's last `lost_runs` runs killed their worker (out of memory, most likely): it is not run again. The
    batch's events are quarantined for this job (so later batches do not trip on them; `celery -A tasks requeue
    --quarantined` releases and replays them after a fix), the job is failed and an admin alert raised; the batch
    still completes (`processed_with_errors`)."""
    batch_id = uuid.UUID(ctx["batch_id"])
    developer_id: str = ctx["developer_id"]
    error = f"job {job} lost its worker {lost_runs} times in a row (killed, e.g. out of memory); not run again"
    duration_ms = int((time.monotonic() - started) * 1000)
    log.error("job %s given up: %s", job, error, extra=_log_extra(ctx, job))
    TASK_OUTCOMES.labels(job, "failed").inc()
    with database().transaction() as session:
        if not job_finished(session, developer_id, batch_id, job, False, duration_ms, error, attempt=ctx["attempt"]):
            return _superseded(job, ctx)
        quarantined = quarantine_batch(session, developer_id=developer_id, batch_id=batch_id, job=job, error=error)
        audit(session, "job_failed", batch_id=batch_id, correlation_id=ctx["correlation_id"],
              is_replay=bool(ctx.get("is_replay")), developer_id=developer_id, job=job, error=error,
              lost_runs=lost_runs, quarantined=quarantined)
        raise_admin_alert(session, "job_lost_worker",
                          f"Job {job} of batch {batch_id} killed its worker {lost_runs} times in a row; "
                          f"{quarantined} event(s) quarantined for {job}. Fix the cause, then "
                          "`celery -A tasks requeue --quarantined`",
                          batch_id=batch_id, correlation_id=ctx["correlation_id"],
                          context={"developer_id": developer_id, "job": job, "step": job, "lost_runs": lost_runs,
                                   "attempt": ctx["attempt"], "quarantined": quarantined})
    return {"job": job, "ok": False, "error": error}


def _work_or_quarantine(session: Session, batch: Batch, job: str, ctx: dict[str, Any],
                        work: JobFunction) -> dict[str, Any]:
    """Run the work; if it fails on events of this batch (not on the database), quarantine them and run again.

    The work runs in a savepoint first, so a failed attempt leaves nothing behind in the transaction.
    """
    try:
        with session.begin_nested():
            return work(session, batch, ctx)
    except Exception as exc:
        if is_transient_error(exc) or isinstance(exc, SoftTimeLimitExceeded):
            raise
        culprits = isolate(session, developer_id=batch.developer_id, batch_id=batch.batch_id, job=job,
                           correlation_id=ctx["correlation_id"], is_replay=bool(ctx.get("is_replay")),
                           work=lambda: work(session, batch, ctx), error=exc)
        if not culprits:
            raise
        outcome = work(session, batch, ctx)
        return {**outcome, "quarantined": len(culprits)}


def _give_up(task: DevpulseTask, job: str, ctx: dict[str, Any], exc: BaseException, started: float, *,
             committed: bool = False, failed_rules: dict[str, str] | None = None) -> dict[str, Any]:
    """Record the failure on the batch and as an admin alert, and report it to the callback.

    The record, the alert and the log line name the events involved (the batch's: a bounded list of ids and
    their count) and the processing state: the batch's status, the job's attempts, whether the job's other work
    was committed, quarantined events, and for danger detection which rules failed.
    """
    error = f"{type(exc).__name__}: {exc}"[:1000]
    duration_ms = int((time.monotonic() - started) * 1000)
    batch_id = uuid.UUID(ctx["batch_id"])
    developer_id: str = ctx["developer_id"]
    attempts = task.request.retries + 1
    facts: dict[str, Any] = {"event_ids": [], "event_count": ctx.get("event_count"), "state": None}
    try:
        with database().session() as session:
            facts = failure_state(session, developer_id, batch_id)
    except Exception:  # the database may be what failed: the record below still tries, with what is known
        log.warning("could not read the state of batch %s for the failure of job %s", batch_id, job,
                    extra=_log_extra(ctx, job))
    state = {**(facts["state"] or {}), "job_status": "failed", "attempts": attempts, "work_committed": committed,
             "task_id": task.request.id}
    involved = {"event_ids": facts["event_ids"], "event_count": facts["event_count"], "state": state}
    if failed_rules:
        involved["failed_rules"] = failed_rules
    log.error("job %s failed after %d attempt(s): %s", job, attempts, error,
              extra=_log_extra(ctx, job, duration_ms=duration_ms, **involved))
    TASK_OUTCOMES.labels(job, "failed").inc()
    try:
        with database().transaction() as session:
            if not job_finished(session, developer_id, batch_id, job, False, duration_ms, error,
                                attempt=ctx["attempt"]):
                return _superseded(job, ctx)
            audit(session, "job_failed", batch_id=batch_id, correlation_id=ctx["correlation_id"],
                  is_replay=bool(ctx.get("is_replay")), developer_id=developer_id, job=job, error=error,
                  attempts=attempts, **involved)
            raise_admin_alert(session, "job_failed", f"Job {job} failed for batch {batch_id}: {error}",
                              batch_id=batch_id, correlation_id=ctx["correlation_id"],
                              context={"developer_id": developer_id, "job": job, "step": job,
                                       "attempt": attempts, "task_id": task.request.id, "error": error,
                                       "is_replay": bool(ctx.get("is_replay")), **involved})
    except Exception:
        log.exception("could not record the failure of job %s", job, extra=_log_extra(ctx, job))
    return {"job": job, "ok": False, "error": error}


def _aggregate(session: Session, batch: Batch, ctx: dict[str, Any]) -> dict[str, Any]:
    prefs = preferences(session, batch.developer_id)
    return aggregate_batch(session, batch, idle_timeout_seconds=prefs.idle_timeout_seconds,
                           max_debug=timedelta(hours=settings().max_debug_session_hours),
                           is_replay=bool(ctx.get("is_replay")))


def _normalize(session: Session, batch: Batch, ctx: dict[str, Any]) -> dict[str, Any]:
    return normalize_batch(session, batch)


def _detect(session: Session, batch: Batch, ctx: dict[str, Any]) -> dict[str, Any]:
    prefs = preferences(session, batch.developer_id)
    return detect_for_batch(session, batch, correlation_id=ctx["correlation_id"],
                            thresholds=thresholds().for_developer(prefs.idle_timeout_seconds),
                            timezone=prefs.timezone if prefs.timezone_set else None,
                            freshness=timedelta(hours=settings().alert_freshness_hours),
                            is_replay=bool(ctx.get("is_replay")),
                            max_notified_per_hour=settings().alert_notify_max_per_hour)


@app.task(bind=True, base=DevpulseTask, name="devpulse.aggregate")
def aggregate(self: DevpulseTask, ctx: dict[str, Any]) -> dict[str, Any]:
    return run_job(self, "aggregate", ctx, _aggregate)


@app.task(bind=True, base=DevpulseTask, name="devpulse.normalize")
def normalize(self: DevpulseTask, ctx: dict[str, Any]) -> dict[str, Any]:
    return run_job(self, "normalize", ctx, _normalize)


@app.task(bind=True, base=DevpulseTask, name="devpulse.detect_danger")
def detect_danger(self: DevpulseTask, ctx: dict[str, Any]) -> dict[str, Any]:
    return run_job(self, "detect_danger", ctx, _detect, after_commit=push_alerts)


@app.task(bind=True, base=DevpulseTask, name="devpulse.mark_batch_processed",
          autoretry_for=(Exception,), retry_backoff=True, retry_backoff_max=60, retry_jitter=True, max_retries=5)
def mark_batch_processed(self: DevpulseTask, results: list[dict[str, Any]], ctx: dict[str, Any]) -> str | None:
    with database().transaction() as session:
        status = complete_batch(session, ctx["developer_id"], uuid.UUID(ctx["batch_id"]), results,
                                ctx["correlation_id"], bool(ctx.get("is_replay")), attempt=ctx["attempt"])
    log.info("batch %s", status or "unchanged", extra=_log_extra(ctx, "completed", status=status))
    if status is not None:
        observe_completion(ctx.get("received_at"), bool(ctx.get("is_replay")))
    return status


# Not bound: Celery calls a bound errback with the failed task's id only, never (request, exc, traceback).
@app.task(base=DevpulseTask, name="devpulse.mark_batch_failed")
def mark_batch_failed(request: Any, exc: Any, traceback: Any, ctx: dict[str, Any]) -> None:
    """Errback of the callback: a hard failure (time limit, crash) still leaves a visible state."""
    error = f"{type(exc).__name__}: {exc}" if isinstance(exc, BaseException) else str(exc)
    if _lost_to_redis_or_database(exc):
        # Redis (or PostgreSQL) went away under the chord: nothing is wrong with the batch. It stays
        # dispatched/processing and the sweeper re-dispatches it; failing it would make a blip permanent.
        log.warning("batch callback lost to %s; the sweeper will re-dispatch it", error,
                    extra=_log_extra(ctx, "failed"))
        return
    with database().transaction() as session:
        if fail_batch(session, ctx["developer_id"], uuid.UUID(ctx["batch_id"]), error, ctx["correlation_id"],
                      bool(ctx.get("is_replay")), attempt=ctx["attempt"]):
            raise_admin_alert(session, "batch_failed", f"Batch {ctx['batch_id']} failed: {error}",
                              batch_id=ctx["batch_id"], correlation_id=ctx["correlation_id"],
                              context={"developer_id": ctx["developer_id"], "step": "canvas", "error": error})
    log.error("batch failed: %s", error, extra=_log_extra(ctx, "failed"))


def _lost_to_redis_or_database(exc: Any) -> bool:
    if not isinstance(exc, BaseException):
        return False
    if is_transient_error(exc):
        return True
    # The header jobs never raise, so a chord error is the result backend failing (e.g. "Join error:
    # network:ConnectionError"); only one caused by a connection problem is transient.
    return isinstance(exc, ChordError) and any(
        word in str(exc) for word in ("ConnectionError", "TimeoutError", "Connection refused", "Connection closed"))
