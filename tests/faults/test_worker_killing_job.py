"""A job that kills its worker process (out of memory) is not redelivered for ever: after JOB_MAX_LOST_RUNS lost
runs in a row it is given up, the batch's events are quarantined for that job, an admin alert is raised and the
batch completes `processed_with_errors`; every other batch is processed as usual.
"""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import text

from core.settings import Settings
from tests.faults.harness import DEFAULT_RECOVERY, Ledger, make_batch, statuses, wait_for, wait_terminal
from tests.faults.worker_killing_job import KILLER_DEVELOPER


@pytest.mark.fault
def test_a_job_that_kills_its_worker_is_capped_quarantined_and_alerted(fault_stack):
    stack = fault_stack(**DEFAULT_RECOVERY)
    stack.start_web()
    stack.start_beat()
    stack.start_worker(app="tests.faults.worker_killing_job")
    ledger = Ledger()
    killer = make_batch(20, developer_id=KILLER_DEVELOPER)
    healthy = make_batch(20)
    started = time.monotonic()
    with requests.Session() as session:
        assert ledger.post(session, stack, killer).status == 202
        assert ledger.post(session, stack, healthy).status == 202
    done = wait_terminal(stack, [killer.batch_id, healthy.batch_id], 120)
    cap = Settings().job_max_lost_runs

    assert statuses(stack, [killer.batch_id, healthy.batch_id]) == {
        killer.batch_id: "processed_with_errors", healthy.batch_id: "processed"}
    with stack.db.engine.connect() as c:
        job = c.execute(text("SELECT status, lost_runs, attempts, error FROM batch_jobs"
                             " WHERE batch_id = CAST(:b AS uuid) AND job = 'aggregate'"),
                        {"b": killer.batch_id}).one()
        quarantined = c.execute(text("SELECT count(*) FROM quarantined_events WHERE batch_id = CAST(:b AS uuid)"
                                     " AND job = 'aggregate' AND released_at IS NULL"),
                                {"b": killer.batch_id}).scalar_one()
        alerts = c.execute(text("SELECT kind, context FROM admin_alerts WHERE batch_id = CAST(:b AS uuid)"),
                           {"b": killer.batch_id}).all()
        completed = c.execute(text("SELECT count(*) FROM audit_log WHERE step = 'completed'"
                                   " AND batch_id = CAST(:b AS uuid)"), {"b": killer.batch_id}).scalar_one()
        other_jobs = dict(c.execute(text("SELECT job, status FROM batch_jobs WHERE batch_id = CAST(:b AS uuid)"
                                         " AND job <> 'aggregate'"), {"b": killer.batch_id}).all())
    report_line = {"lost_runs": job.lost_runs, "runs": job.attempts, "quarantined": quarantined,
                   "alerts": ",".join(a.kind for a in alerts)}
    print(f"\nFAULT-RESULT worker_killing_job terminal_after_s={done - started:.1f} "
          + " ".join(f"{k}={v}" for k, v in report_line.items()), flush=True)
    assert job.status == "failed" and job.lost_runs == cap and job.attempts == cap + 1, job
    assert "lost its worker" in job.error, job.error
    assert quarantined == len(killer.event_ids)
    assert [a.kind for a in alerts] == ["job_lost_worker"], alerts
    assert alerts[0].context["job"] == "aggregate" and alerts[0].context["lost_runs"] == cap
    assert completed == 1
    assert other_jobs == {"normalize": "ok", "detect_danger": "ok"}
    wait_for(lambda: stack.services["worker"].running, 5, "the worker still runs")
