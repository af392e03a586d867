"""Fault 7: the worker dies between the commit that stores an alert and the alert's notification.

Made deterministic with two holds the test owns: its own session holds the developer's detection lock (the
advisory lock models/aggregation.py `lock_developer` takes), so detect_danger waits just before its work; then
Redis is frozen (SIGSTOP) and the lock released. The job stores the alert and its notification record and commits;
its publish right after the commit blocks on the frozen Redis. As soon as the alert is visible, the whole worker
process group gets SIGKILL: nothing was sent (the record is still pending, unpublished, attempts 0). Redis is
thawed and a new worker started; beat's alert relay delivers the record, and the webhook receiver (a local HTTP
server of this test) gets the alert exactly once by its idempotency key, while the batch is still processed once.
"""

from __future__ import annotations

import signal
import time
import uuid
from datetime import timedelta

import pytest
import requests
from sqlalchemy import text

from tests.faults.harness import (
    DEVELOPER,
    Ledger,
    Sent,
    assert_exact,
    check_store,
    make_batch,
    report,
    wait_for,
    wait_terminal,
)
from tests.support.factories import batch, event, now
from tests.support.webhooks import Receiver

SECRET = "fault-secret-" + uuid.uuid4().hex


def alerting_batch() -> Sent:
    """24 failed builds in 8 minutes: one medium `excessive_errors` alert."""
    start = now() - timedelta(minutes=12)
    events = [event("build.result", start + i * timedelta(seconds=20), success=False, duration_ms=500)
              for i in range(24)]
    return Sent(batch(events, developer_id=DEVELOPER), [e["event_id"] for e in events], 0)


def one(stack, sql: str, **params: object) -> tuple:
    with stack.db.engine.connect() as c:
        return tuple(c.execute(text(sql), params).one())


@pytest.mark.fault
def test_worker_killed_between_alert_commit_and_notify_delivers_once_after_restart(fault_stack):
    receiver = Receiver(200)
    try:
        stack = fault_stack(alert_webhook_url=receiver.url, alert_webhook_secret=SECRET)
        stack.start_web()
        stack.start_worker()
        stack.start_beat()
        ledger = Ledger()
        with requests.Session() as session:
            warm = make_batch()
            assert ledger.post(session, stack, warm).status == 202
            wait_terminal(stack, [warm.batch_id], 60)

            victim = alerting_batch()
            with stack.db.engine.connect() as holder:
                holder.execute(text("SELECT pg_advisory_lock(hashtextextended(:key, 0))"),
                               {"key": f"danger:{DEVELOPER}"})
                assert ledger.post(session, stack, victim).status == 202
                wait_for(lambda: one(stack, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                            " AND NOT granted")[0] > 0, 30, "detect_danger waiting for the lock")
                stack.redis.process.send_signal(signal.SIGSTOP)
                try:
                    holder.execute(text("SELECT pg_advisory_unlock(hashtextextended(:key, 0))"),
                                   {"key": f"danger:{DEVELOPER}"})
                    holder.commit()
                    wait_for(lambda: one(stack, "SELECT count(*) FROM alerts")[0] == 1, 20, "the alert committed",
                             interval=0.01)
                    stack.kill("worker")
                    status, published, attempts, count = one(
                        stack, "SELECT status, published_at, attempts, alert_count FROM alert_notifications")
                    # Killed between the commit and the notification: nothing sent, nothing counted.
                    assert (status, published, attempts, count) == ("pending", None, 0, 1)
                finally:
                    stack.redis.process.send_signal(signal.SIGCONT)
        stack.start_worker()
        fault_end = time.monotonic()

        wait_for(lambda: receiver.hits, 60, "the webhook after the restart")
        delivered_at = time.monotonic()
        wait_terminal(stack, [victim.batch_id], 60)
        time.sleep(3)  # the relay's next passes and the batch's rerun get the chance to send it again
        alert_id, version = one(stack, "SELECT alert_id::text, version FROM alerts")
        assert receiver.keys() == [f"{alert_id}:{version}"], receiver.keys()  # exactly once, by its key
        assert list(receiver.accepted(SECRET)) == [f"{alert_id}:{version}"]  # signed and fresh
        assert one(stack, "SELECT status FROM alert_notifications") == ("delivered",)
        assert one(stack, "SELECT count(*) FROM alert_notifications") == (1,)
        figures = check_store(stack, ledger)
        report("alert_crash_after_commit", figures, delivered_at - fault_end, webhook_requests=len(receiver.hits))
        assert_exact(figures, expect_ack=2)
    finally:
        receiver.stop()
