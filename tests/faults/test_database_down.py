"""Fault 2: PostgreSQL crashes (immediate shutdown) under continuous ingestion, then comes back.

While it is down every answer is a fast 503 with Retry-After: each gunicorn worker's `database` breaker
opens after at most DB_BREAKER_FAIL_MAX failed attempts, then fails requests without touching the
network. Nothing is half-written (each attempt is one transaction), and once PostgreSQL is back on the
same port and data dir the breaker's half-open probe closes it and 202s resume. Every batch a client
was told 202 is stored exactly once with all its events; batches answered 503 are resent (same
batch_id) and end stored exactly once too.

The server runs durable (fsync, synchronous_commit on): an immediate shutdown is a crash, and with
`synchronous_commit=off` (EmbeddedPostgres(durable=False)) the last ~200 ms of acknowledged commits
may legitimately vanish, which is a property of that throwaway configuration, not of devpulse.
"""

from __future__ import annotations

import time

import pytest

from tests.faults.harness import (
    Ledger,
    Load,
    assert_exact,
    check_store,
    percentile,
    report,
    wait_for,
    wait_terminal,
)

DOWN_SECONDS = 4.0
WEB_WORKERS = 2
FAIL_MAX = 5


HANGING_S = 0.5


@pytest.mark.fault
def test_database_down_fast_503_then_resumes_exactly_once(fault_stack):
    stack = fault_stack(durable_postgres=True, db_breaker_fail_max=FAIL_MAX)
    stack.start_web()
    stack.start_worker()
    stack.start_beat()
    ledger = Ledger()
    with Load(stack, ledger, threads=4, sticky_pause=0.01):
        # Both gunicorn workers have served (token cached, pool warm) long before the crash.
        wait_for(lambda: len(ledger.acked) >= 40, 60, "load is being acknowledged")
        stack.pg.stop("immediate")
        t_down = time.monotonic()
        time.sleep(DOWN_SECONDS)
        t_restart = time.monotonic()
        stack.pg.start()
        t_up = time.monotonic()
        # Ingestion resumes: a request sent after the restart is acknowledged.
        first_ack = wait_for(
            lambda: min((r.sent_at + r.latency for r in list(ledger.replies)
                         if r.status == 202 and r.sent_at >= t_up), default=None),
            20, "a 202 after the restart")
        time.sleep(1.0)
    acked_live = len(ledger.acked)
    ledger.resend_outstanding(stack)

    replies = list(ledger.replies)
    bad = [r for r in replies if r.status not in (200, 202, 503) or r.error]
    assert not bad, bad[:5]
    # Answers to requests sent while PostgreSQL was down (and answered before it came back).
    outage = sorted((r for r in replies if r.sent_at >= t_down and r.sent_at + r.latency <= t_restart),
                    key=lambda r: r.sent_at)
    assert outage and all(r.status == 503 for r in outage), {r.status for r in outage}
    assert all(r.retry_after and r.retry_after.isdigit() and int(r.retry_after) >= 1 for r in outage)
    # Each request costs the breaker at least one failure: past the first fail_max per worker it is open.
    opening = WEB_WORKERS * FAIL_MAX
    # "Fast" means no request waits for the database (a 3 s connect timeout, a retry budget): the bound sits far
    # below that and far above this machine's noise (p99 16-31 ms quiet, up to ~200 ms under a loaded 2-core box;
    # the figures themselves are reported, and in the README). Speed targets live in bench/, not here.
    slow = [r for r in outage if r.latency >= HANGING_S]
    fast_phase = [r.latency for r in outage[opening:]]
    p99 = percentile(fast_phase, 99)
    resumed_s = first_ack - t_up

    done = wait_terminal(stack, list(ledger.acked), 120)
    figures = check_store(stack, ledger)
    report("database_down", figures, resumed_s, drain_s=round(done - t_up, 1),
           down_s=round(t_restart - t_down, 1), restart_s=round(t_up - t_restart, 1),
           acked_during_load=acked_live, outage_503=len(outage),
           slow_503=len(slow), p50_503_ms=round(percentile(fast_phase, 50) * 1000, 2),
           p99_503_ms=round(p99 * 1000, 2), max_503_ms=round(max(r.latency for r in outage) * 1000, 1),
           resent=sum(1 for b, s in ledger.acked.items() if s == 200))
    assert len(fast_phase) >= 50, len(outage)
    assert p99 < HANGING_S, f"p99 of 503 latency once the breaker is open: {p99 * 1000:.1f} ms"
    assert len(slow) <= opening, f"{len(slow)} slow 503s (breaker should open within {opening} requests)"
    assert resumed_s < 10, f"no 202 within 10 s of PostgreSQL being back: {resumed_s:.1f} s"
    assert_exact(figures)
