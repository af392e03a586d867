"""Fault 1b: the broker hangs instead of refusing (SIGSTOP: like a network partition or a wedged Redis).

Connections are accepted by the kernel but nothing answers, so every Redis call waits for its timeout.
Ingestion must still acknowledge from PostgreSQL alone, promptly, on one keep-alive connection: the
rate limiter fails open after its 0.2 s timeout and the publish runs off the request's thread (a publish
blocked on the frozen broker, ~15 s, must not delay the next request). Nothing is lost, and once Redis
answers again every batch is published (by the web or the relay) and processed.
"""

from __future__ import annotations

import signal
import time

import pytest
import requests

from tests.faults.harness import Ledger, assert_exact, check_store, make_batch, report, wait_terminal

POSTS = 3
FAST_ACK_S = 1.0


@pytest.mark.fault
def test_broker_frozen_acks_from_postgres_then_relayed(fault_stack):
    stack = fault_stack()
    stack.start_web()
    stack.start_worker()
    stack.start_beat()
    ledger = Ledger()
    with requests.Session() as session:  # one keep-alive connection, like the extension's client
        warm = make_batch()
        assert ledger.post(session, stack, warm).status == 202
        wait_terminal(stack, [warm.batch_id], 60)
        stack.redis.process.send_signal(signal.SIGSTOP)
        try:
            replies = [ledger.post(session, stack, make_batch(), timeout=60) for _ in range(POSTS)]
        finally:
            stack.redis.process.send_signal(signal.SIGCONT)
        fault_end = time.monotonic()
    assert [r.status for r in replies] == [202] * POSTS, replies
    done = wait_terminal(stack, list(ledger.acked), 120)
    figures = check_store(stack, ledger)
    latencies = [round(r.latency, 2) for r in replies]
    report("broker_frozen", figures, done - fault_end, ack_latencies_s=latencies)
    assert_exact(figures, expect_ack=POSTS + 1)
    assert max(latencies) < FAST_ACK_S, f"acks waited for the frozen broker: {latencies} s"
