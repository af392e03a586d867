"""Periodic jobs (see tasks/schedule.py): the outbox relay, the stuck-batch sweeper, audit sealing."""

from __future__ import annotations

import logging
from datetime import timedelta

from models.audit_chain import seal_pending
from models.operations import requeue
from models.recompute import pending_developers, recompute_chunk
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


@app.task(base=DevpulseTask, name="devpulse.maintenance.sweep_stuck_batches", ignore_result=True)
def sweep_stuck_batches() -> list[str]:
    """The same re-dispatch as `celery -A tasks requeue --stuck-for` (a stuck replay stays a replay), for
    batches the pipeline has moved past: under a backlog a queued batch is waiting, not lost."""
    db, app_ = database(), celery()
    rows = requeue(db, lambda outbox_id: dispatch_record(db, app_, outbox_id),
                   stuck_for=timedelta(seconds=settings().stuck_after_seconds), requested_by="sweeper",
                   overtaken=True)
    if rows:
        log.warning("re-dispatched %d stuck batch(es)", len(rows), extra={"step": "sweeper"})
    return [row.batch_id for row in rows]


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
