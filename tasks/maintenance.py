"""Periodic jobs (see tasks/schedule.py): the outbox relay, the stuck-batch sweeper, audit sealing."""

from __future__ import annotations

import logging
from datetime import timedelta

from models.audit_chain import seal_pending
from models.outbox import redispatch_stuck
from tasks.canvas import relay
from tasks.celery_app import app
from tasks.context import DevpulseTask, database, settings

log = logging.getLogger("devpulse.maintenance")


@app.task(base=DevpulseTask, name="devpulse.maintenance.relay_outbox", ignore_result=True)
def relay_outbox() -> dict[str, int]:
    result = relay(database(), settings())
    if result["due"]:
        log.info("outbox relay: %s", result, extra={"step": "relay"})
    return result


@app.task(base=DevpulseTask, name="devpulse.maintenance.sweep_stuck_batches", ignore_result=True)
def sweep_stuck_batches() -> list[str]:
    with database().transaction() as session:
        ids = redispatch_stuck(session, timedelta(seconds=settings().stuck_after_seconds))
    if ids:
        log.warning("re-dispatching %d stuck batch(es)", len(ids), extra={"step": "sweeper"})
        relay(database(), settings())
    return ids


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
