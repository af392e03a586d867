"""Periodic jobs (see tasks/schedule.py): the outbox relay, the stuck-batch sweeper, audit sealing."""

from __future__ import annotations

import logging
from datetime import timedelta

from models.audit_chain import seal_pending
from models.operations import requeue
from tasks.celery_app import app
from tasks.context import DevpulseTask, celery, database, settings
from tasks.dispatch import dispatch_record, relay

log = logging.getLogger("devpulse.maintenance")


@app.task(base=DevpulseTask, name="devpulse.maintenance.relay_outbox", ignore_result=True)
def relay_outbox() -> dict[str, int]:
    result = relay(database(), celery())
    if result["due"]:
        log.info("outbox relay: %s", result, extra={"step": "relay"})
    return result


@app.task(base=DevpulseTask, name="devpulse.maintenance.sweep_stuck_batches", ignore_result=True)
def sweep_stuck_batches() -> list[str]:
    """The same re-dispatch as `celery -A tasks requeue --stuck-for`: a stuck replay stays a replay."""
    db, app_ = database(), celery()
    rows = requeue(db, lambda outbox_id: dispatch_record(db, app_, outbox_id),
                   stuck_for=timedelta(seconds=settings().stuck_after_seconds), requested_by="sweeper")
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
