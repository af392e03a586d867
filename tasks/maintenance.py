"""Periodic jobs (see tasks/schedule.py): the outbox relay and the stuck-batch sweeper."""

from __future__ import annotations

import logging
from datetime import timedelta

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
