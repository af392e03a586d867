"""Fault 1: the broker (Redis) is down while batches arrive.

Ingestion must not care: every batch is committed and acknowledged (202), its publish fails and stays
in the outbox; once Redis is back (same port, empty: it lost everything), beat's outbox relay publishes
every pending record and every batch reaches `processed` with exact metrics.
"""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import text

from tests.faults.harness import (
    Ledger,
    assert_exact,
    check_store,
    make_batch,
    percentile,
    report,
    statuses,
    wait_for,
    wait_terminal,
)

BATCHES = 50
MIN_DOWN_SECONDS = 5.0


@pytest.mark.fault
def test_broker_down_every_batch_acknowledged_then_relayed(fault_stack):
    stack = fault_stack()
    stack.start_web()
    stack.start_worker()
    stack.start_beat()
    ledger = Ledger()
    with requests.Session() as session:
        warm = make_batch()
        assert ledger.post(session, stack, warm).status == 202
        wait_terminal(stack, [warm.batch_id], 60)

        stack.redis.stop()
        t_down = time.monotonic()
        latencies = []
        for _ in range(BATCHES):
            reply = ledger.post(session, stack, make_batch())
            assert reply.status == 202, reply
            latencies.append(reply.latency)
        # Nothing could be published: every new batch waits in the outbox.
        with stack.db.engine.connect() as c:
            persisted = c.execute(text("SELECT count(*) FROM batches WHERE status = 'persisted'")).scalar_one()
            pending = c.execute(text("SELECT count(*) FROM outbox WHERE status = 'pending'")).scalar_one()
        assert persisted == BATCHES and pending == BATCHES, (persisted, pending)
        time.sleep(max(0.0, t_down + MIN_DOWN_SECONDS - time.monotonic()))
        stack.redis.start()  # same port, empty
        fault_end = time.monotonic()
    first = wait_for(lambda: any(s == "processed" for b, s in statuses(stack, list(ledger.acked)).items()
                                 if b != warm.batch_id), 90, "a first batch processed after the outage")
    first_s = time.monotonic() - fault_end
    done = wait_terminal(stack, list(ledger.acked), 120)
    figures = check_store(stack, ledger)
    report("broker_down", figures, done - fault_end, batches_while_down=BATCHES, down_s=round(fault_end - t_down, 1),
           first_processed_s=round(first_s, 1), max_ack_latency_s=max(latencies),
           p50_ack_latency_ms=round(percentile(latencies, 50) * 1000, 1))
    assert first
    assert_exact(figures, expect_ack=BATCHES + 1)
    assert figures.processed == BATCHES + 1
