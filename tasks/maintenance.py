"""Periodic jobs (see tasks/schedule.py): the outbox relays (batches, alert notifications), the stuck-batch
sweeper, audit sealing."""

from __future__ import annotations

import logging
from datetime import timedelta

from models.audit_chain import seal_pending
from models.batch_lifecycle import complete_batch
from models.operations import requeue, requeue_selected
from models.recompute import pending_developers, recompute_chunk
from models.recovery import lost_batches, orphaned_completions, remember_marker, remembered_marker
from tasks.alert_delivery import relay as relay_alerts
from tasks.broker_watch import look
from tasks.celery_app import app
from tasks.context import DevpulseTask, celery, database, settings, thresholds
from tasks.dispatch import dispatch_record, relay

log = logging.getLogger("devpulse.maintenance")


@app.task(base=DevpulseTask, name="devpulse.maintenance.relay_outbox", ignore_result=True)
def relay_outbox() -> dict[str, int]:
    result = relay(database(), celery())
    # INFO only when it moved something; a failed publish is logged (WARNING) where it failed.
    log.log(logging.INFO if result["published"] else logging.DEBUG, "outbox relay: %s", result,
            extra={"step": "relay"})
    return result


@app.task(base=DevpulseTask, name="devpulse.maintenance.relay_alert_notifications", ignore_result=True)
def relay_alert_notifications() -> dict[str, int]:
    """Deliver alert notifications that their detection task did not (crash, Redis or receiver failure)."""
    result = relay_alerts(database())
    if result["due"]:
        log.info("alert notification relay: %s", result, extra={"step": "alert_relay"})
    return result


@app.task(base=DevpulseTask, name="devpulse.maintenance.sweep_stuck_batches", ignore_result=True)
def sweep_stuck_batches() -> list[str]:
    """Recover batches whose messages are lost, told by evidence (models/recovery.py): a job's lease ran out,
    the broker lost its contents, or nothing is queued or held for a batch that has not started. A batch whose
    jobs all finished but whose callback never came is completed from their recorded outcomes. Backstop: the
    same re-dispatch as `celery -A tasks requeue --stuck-for` for batches the pipeline has moved past (under a
    backlog, or while the workers are down, a queued batch is waiting, not lost). A re-dispatch is a new
    attempt: whatever the old one still does is ignored (fenced by attempt)."""
    db, app_, config = database(), celery(), settings()
    lease = timedelta(seconds=config.job_lease_seconds)
    completed = []
    with db.transaction() as session:
        for orphan in orphaned_completions(session, lease=lease):
            batch = orphan.batch
            if complete_batch(session, batch.developer_id, batch.batch_id, orphan.results, batch.correlation_id,
                              orphan.is_replay, attempt=batch.dispatch_count):
                completed.append(str(batch.batch_id))
    if completed:
        log.warning("completed %d batch(es) whose callback was lost", len(completed), extra={"step": "sweeper"})
    with db.transaction() as session:  # sweeps take turns on the remembered marker
        remembered = remembered_marker(session)
        broker, token = look(config, remembered)
        if token is not None and token != remembered:
            remember_marker(session, token)
    rows = requeue_selected(db, lambda outbox_id: dispatch_record(db, app_, outbox_id),
                            lambda session: lost_batches(session, broker, lease=lease), requested_by="sweeper")
    rows += requeue(db, lambda outbox_id: dispatch_record(db, app_, outbox_id),
                    stuck_for=timedelta(seconds=config.stuck_after_seconds), requested_by="sweeper",
                    overtaken=True)
    if rows:
        log.warning("re-dispatched %d lost batch(es): %s", len(rows), "; ".join(sorted({r.reason for r in rows})),
                    extra={"step": "sweeper"})
    return completed + [row.batch_id for row in rows]


@app.task(base=DevpulseTask, name="devpulse.maintenance.seal_audit_log", ignore_result=True)
def seal_audit_log() -> dict[str, int | None]:
    """Chain the audit records written since the last run (see models/audit_chain.py).

    Does not wait for the sealer lock: if another run still holds it, this one has nothing to do.
    """
    result = seal_pending(database(), wait=False)
    if result.sealed:
        log.info("sealed %d audit record(s), seal_seq %s..%s", result.sealed, result.first_seq, result.last_seq,
                 extra={"step": "audit_seal"})
    return {"sealed": result.sealed, "last_seq": result.last_seq}


@app.task(base=DevpulseTask, name="devpulse.maintenance.recompute_developers", ignore_result=True)
def recompute_developers(max_chunks: int = 20) -> list[dict[str, str]]:
    """Advance pending recomputes (settings changes, migrations): one day of one developer per transaction."""
    db, done = database(), list[dict[str, str]]()
    max_debug = timedelta(hours=settings().max_debug_session_hours)
    with db.session() as session:
        developers = pending_developers(session)
    for developer_id in developers:
        while len(done) < max_chunks:
            with db.transaction() as session:
                chunk = recompute_chunk(session, developer_id, thresholds=thresholds(), max_debug=max_debug)
            if chunk is None:
                break
            done.append({"developer_id": developer_id, "done_until": chunk.done_until.isoformat()})
            if chunk.finished:
                log.info("recompute of %s finished", developer_id, extra={"step": "recompute"})
                break
    return done
