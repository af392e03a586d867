"""Audit records carry the time of their own step, not their transaction's start (issue 18, gap 2)."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from sqlalchemy import text

from models.batch_lifecycle import finish_job, start_job
from tests.support.factories import batch, event
from tests.support.pipeline import persist_body


def test_job_finished_carries_the_time_it_was_written_not_the_jobs_start(clean_db):
    body = batch([event()])
    persist_body(clean_db, body)
    batch_id = uuid.UUID(body["batch_id"])
    with clean_db.transaction() as s:
        start_job(s, "dev-1", batch_id, "aggregate", task_id="t-1", is_replay=False, correlation_id="c-1", attempt=1)
    with clean_db.transaction() as s:
        began = s.execute(text("SELECT now()")).scalar_one()
        time.sleep(0.3)  # the job's work
        assert finish_job(s, "dev-1", batch_id, "aggregate", duration_ms=300, correlation_id="c-1",
                          is_replay=False, outcome={}, attempt=1)
    with clean_db.engine.connect() as conn:
        finished = conn.execute(text("SELECT created_at FROM audit_log WHERE step = 'job_finished'")).scalar_one()
    assert finished - began >= timedelta(seconds=0.3)
