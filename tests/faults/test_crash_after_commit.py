"""Fault 6: the web process dies between the commit (202 sent) and the publish of the batch's chord.

Made deterministic by freezing Redis (SIGSTOP) before the request: the rate limiter fails open after its
0.2 s timeout, the batch is committed and answered 202, then the after-response publish blocks on the
frozen broker while holding the claimed outbox row. As soon as that row is seen locked, the whole
gunicorn process group gets SIGKILL: the claim's transaction dies with it, so the outbox row is still
`pending` (attempts 0) and the batch `persisted`. Redis is thawed; beat's outbox relay publishes the
record and the batch is processed exactly once. Whatever the killed process had already written to the
broker socket may still reach Redis: then that chord runs, and the relay closes the record without publishing
it again (or, if the relay publishes first, the second run of the same chord changes nothing).
"""

from __future__ import annotations

import signal
import time

import pytest
import requests
from sqlalchemy import text

from tests.faults.harness import Ledger, assert_exact, check_store, make_batch, report, wait_for, wait_terminal


def _outbox(stack, batch_id: str) -> tuple[int, str, int, bool]:
    """(id, status, attempts, locked by another transaction)."""
    with stack.db.engine.connect() as c, c.begin():
        row = c.execute(text("SELECT id, status, attempts FROM outbox WHERE batch_id = CAST(:b AS uuid)"),
                        {"b": batch_id}).one()
        free = c.execute(text("SELECT id FROM outbox WHERE id = :id FOR UPDATE SKIP LOCKED"),
                         {"id": row[0]}).first()
        return int(row[0]), str(row[1]), int(row[2]), free is None


@pytest.mark.fault
def test_web_killed_after_commit_before_publish_relay_publishes(fault_stack):
    stack = fault_stack()
    stack.start_web()
    stack.start_worker()
    stack.start_beat()
    ledger = Ledger()
    with requests.Session() as session:
        warm = make_batch()
        assert ledger.post(session, stack, warm).status == 202
        wait_terminal(stack, [warm.batch_id], 60)

        victim = make_batch()
        stack.redis.process.send_signal(signal.SIGSTOP)
        try:
            reply = ledger.post(session, stack, victim)
            assert reply.status == 202, reply
            # The publish is under way (the outbox row is claimed) and cannot finish: kill the web now.
            wait_for(lambda: _outbox(stack, victim.batch_id)[3], 10, "the publish claimed the outbox row")
            stack.kill("web")
            # PostgreSQL rolls back the dead connection's transaction (the claim) once it sees it closed.
            wait_for(lambda: not _outbox(stack, victim.batch_id)[3], 10, "the dead claim released")
            outbox_id, status, attempts, locked = _outbox(stack, victim.batch_id)
            assert (status, attempts, locked) == ("pending", 0, False), (status, attempts, locked)
            with stack.db.engine.connect() as c:
                batch_status = c.execute(text("SELECT status FROM batches WHERE batch_id = CAST(:b AS uuid)"),
                                         {"b": victim.batch_id}).scalar_one()
            assert batch_status == "persisted"
        finally:
            stack.redis.process.send_signal(signal.SIGCONT)
        fault_end = time.monotonic()

    done = wait_terminal(stack, [victim.batch_id], 60)
    # The service goes on: a new web process acknowledges and publishes directly.
    stack.start_web()
    with requests.Session() as session:
        after = make_batch()
        assert ledger.post(session, stack, after).status == 202
    wait_terminal(stack, [after.batch_id], 60)

    with stack.db.engine.connect() as c:
        victim_outbox = c.execute(text("SELECT status, attempts FROM outbox WHERE id = :id"),
                                  {"id": outbox_id}).one()
        # 3 when the chord ran once; more if bytes the killed process had sent still reached Redis.
        job_runs = c.execute(text("SELECT coalesce(sum(attempts), 0) FROM batch_jobs"
                                  " WHERE batch_id = CAST(:b AS uuid)"), {"b": victim.batch_id}).scalar_one()
        skipped = c.execute(text("SELECT count(*) FROM audit_log WHERE batch_id = CAST(:b AS uuid)"
                                 " AND step = 'dispatch_skipped'"), {"b": victim.batch_id}).scalar_one()
    # Published once by the relay; or, when the bytes the killed process had sent reached Redis and that chord
    # ran first, closed by the relay without a second publish (models/outbox.py: already_served).
    assert tuple(victim_outbox) in {("dispatched", 1), ("dispatched", 0)}, victim_outbox
    assert (victim_outbox[1], skipped) in {(1, 0), (0, 1)}, (victim_outbox, skipped)
    figures = check_store(stack, ledger)
    report("crash_after_commit", figures, done - fault_end, victim_job_runs=int(job_runs),
           ack_with_frozen_redis_s=round(reply.latency, 2))
    assert_exact(figures, expect_ack=3)
