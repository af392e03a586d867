"""Faults 3 and 4: the worker dies mid-chord (SIGKILL to its whole process group), or Redis loses
everything mid-chord (FLUSHALL: queues, unacked messages, chord counters, results).

The header jobs are made slow deterministically: several 1000-event batches of one developer are stored
while no worker runs, so every aggregation recomputes over thousands of events. The fault is injected
as soon as the first `job_started` audit row appears, i.e. while header jobs are running and the rest
are still queued. Recovery comes from acks_late redelivery (visibility_timeout = 3 x TASK_TIME_LIMIT)
or, sooner, from beat's sweeper (leases, the broker's marker; STUCK_AFTER_SECONDS=5 here, every 10 s), and in
the `with_default_settings` tests as deployed, within a minute; either way each batch
ends `processed` exactly once (one `completed` audit row), metrics exact, no alert twice.
"""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import text

from tests.faults.harness import (
    DEFAULT_RECOVERY,
    FaultStack,
    Ledger,
    assert_exact,
    check_store,
    make_batch,
    report,
    wait_for,
    wait_terminal,
)

BIG_BATCHES = 4
BIG_EVENTS = 1000


def _store_big_batches(stack: FaultStack, ledger: Ledger) -> None:
    """Acknowledged and published while no worker runs: the chords wait in Redis."""
    with requests.Session() as session:
        for _ in range(BIG_BATCHES):
            reply = ledger.post(session, stack, make_batch(BIG_EVENTS, spread_minutes=180), timeout=60)
            assert reply.status == 202, reply


def _first_job_started(stack: FaultStack) -> bool:
    with stack.db.engine.connect() as c:
        return bool(c.execute(text("SELECT 1 FROM audit_log WHERE step = 'job_started' LIMIT 1")).first())


def _marker_remembered(stack: FaultStack) -> bool:
    with stack.db.engine.connect() as c:
        return bool(c.execute(text("SELECT 1 FROM broker_markers")).first())


def _in_flight(stack: FaultStack) -> dict[str, int]:
    with stack.db.engine.connect() as c:
        running = c.execute(text("SELECT count(*) FROM batch_jobs WHERE status = 'running'")).scalar_one()
        unfinished = c.execute(text(
            "SELECT count(*) FROM batches WHERE status IN ('persisted', 'dispatched', 'processing')")).scalar_one()
    return {"running_jobs": int(running), "unfinished_batches": int(unfinished)}


def _recovered_by(stack: FaultStack) -> dict[str, int]:
    with stack.db.engine.connect() as c:
        requeued = c.execute(text("SELECT count(*) FROM audit_log WHERE step = 'requeued'")).scalar_one()
        retried_jobs = c.execute(text("SELECT count(*) FROM batch_jobs WHERE attempts > 1")).scalar_one()
        reasons = c.execute(text("SELECT details->>'reason', count(*) FROM audit_log WHERE step = 'requeued'"
                                 " GROUP BY 1 ORDER BY 1")).all()
    return {"sweeper_requeued": int(requeued), "jobs_run_twice": int(retried_jobs),
            "requeue_reasons": ",".join(f"{reason}:{n}" for reason, n in reasons) or "-"}


@pytest.mark.fault
def test_worker_killed_mid_chord_batches_processed_exactly_once(fault_stack):
    stack = fault_stack()
    stack.start_web()
    stack.start_beat()
    ledger = Ledger()
    _store_big_batches(stack, ledger)
    stack.start_worker()
    wait_for(lambda: _first_job_started(stack), 60, "a header job started", interval=0.02)
    stack.kill("worker")  # SIGKILL to the main process and every pool child at once
    at_kill = _in_flight(stack)
    assert at_kill["unfinished_batches"] > 0 and at_kill["running_jobs"] > 0, at_kill
    stack.start_worker()
    fault_end = time.monotonic()

    done = wait_terminal(stack, list(ledger.acked), 150)
    figures = check_store(stack, ledger)
    report("worker_killed", figures, done - fault_end, **at_kill, **_recovered_by(stack))
    assert_exact(figures, expect_ack=BIG_BATCHES)


@pytest.mark.fault
def test_redis_flushed_mid_chord_sweeper_completes_batches(fault_stack):
    stack = fault_stack()
    stack.start_web()
    stack.start_beat()
    ledger = Ledger()
    _store_big_batches(stack, ledger)
    stack.start_worker()
    wait_for(lambda: _first_job_started(stack), 60, "a header job started", interval=0.02)
    client = stack.redis_client()
    try:
        queued = sum(int(client.llen(q)) for q in ("aggregation", "normalization", "danger", "pipeline"))
        assert client.flushall()
    finally:
        client.close()
    fault_end = time.monotonic()
    at_flush = _in_flight(stack)
    assert at_flush["unfinished_batches"] > 0, at_flush

    done = wait_terminal(stack, list(ledger.acked), 150)
    figures = check_store(stack, ledger)
    recovered = _recovered_by(stack)
    report("redis_flushall", figures, done - fault_end, queued_messages_lost=queued, **at_flush, **recovered)
    assert_exact(figures, expect_ack=BIG_BATCHES)
    if queued:
        # Messages were lost with the flush: only the sweeper can have brought those batches back.
        assert recovered["sweeper_requeued"] > 0, recovered


RECOVERY_TARGET_S = 60.0


@pytest.mark.fault
def test_worker_killed_with_default_settings_recovered_within_a_minute(fault_stack):
    """As deployed (STUCK_AFTER_SECONDS, time limits and visibility timeout at their defaults): the jobs the
    killed worker was running are found by their leases running out, not by a fixed age."""
    stack = fault_stack(**DEFAULT_RECOVERY)
    stack.start_web()
    stack.start_beat()
    ledger = Ledger()
    _store_big_batches(stack, ledger)
    stack.start_worker()
    wait_for(lambda: _first_job_started(stack), 60, "a header job started", interval=0.02)
    killed = time.monotonic()
    stack.kill("worker")
    at_kill = _in_flight(stack)
    assert at_kill["unfinished_batches"] > 0 and at_kill["running_jobs"] > 0, at_kill
    stack.start_worker()
    fault_end = time.monotonic()

    done = wait_terminal(stack, list(ledger.acked), 150)
    figures = check_store(stack, ledger)
    report("worker_killed_defaults", figures, done - fault_end, since_kill_s=round(done - killed, 1), **at_kill,
           **_recovered_by(stack))
    assert_exact(figures, expect_ack=BIG_BATCHES)
    assert done - fault_end <= RECOVERY_TARGET_S, f"recovered after {done - fault_end:.1f} s"


@pytest.mark.fault
def test_redis_flushed_with_default_settings_recovered_within_a_minute(fault_stack):
    """As deployed: Redis loses every message (FLUSHALL) while header jobs run and others wait in the queues, in a
    deployment that has run before (the sweeper's marker is in place)."""
    stack = fault_stack(**DEFAULT_RECOVERY)
    stack.start_web()
    stack.start_beat()
    stack.start_worker()
    wait_for(lambda: _marker_remembered(stack), 60, "the sweeper's first look at the broker")
    stack.kill("worker")
    ledger = Ledger()
    _store_big_batches(stack, ledger)
    stack.start_worker()
    wait_for(lambda: _first_job_started(stack), 60, "a header job started", interval=0.02)
    client = stack.redis_client()
    try:
        queued = sum(int(client.llen(q)) for q in ("aggregation", "normalization", "danger", "pipeline"))
        assert client.flushall()
    finally:
        client.close()
    fault_end = time.monotonic()
    at_flush = _in_flight(stack)
    assert at_flush["unfinished_batches"] > 0, at_flush

    done = wait_terminal(stack, list(ledger.acked), 150)
    figures = check_store(stack, ledger)
    report("redis_flushall_defaults", figures, done - fault_end, queued_messages_lost=queued, **at_flush,
           **_recovered_by(stack))
    assert_exact(figures, expect_ack=BIG_BATCHES)
    assert done - fault_end <= RECOVERY_TARGET_S, f"recovered after {done - fault_end:.1f} s"
