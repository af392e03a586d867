"""core/logging.py: periodic maintenance tasks do not flood the log when nothing happens."""

from __future__ import annotations

import logging

from core.logging import QuietPeriodicTasks


def record(name: str, level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, (), None)


def test_celerys_info_lines_about_maintenance_tasks_are_dropped() -> None:
    quiet = QuietPeriodicTasks()
    assert not quiet.filter(record("celery.app.trace", logging.INFO,
                                   "Task devpulse.maintenance.relay_outbox[abc] succeeded in 0.01s: {}"))
    assert not quiet.filter(record("celery.worker.strategy", logging.INFO,
                                   "Task devpulse.maintenance.seal_audit_log[abc] received"))
    assert not quiet.filter(record("celery.beat", logging.INFO,
                                   "Scheduler: Sending due task outbox-relay (devpulse.maintenance.relay_outbox)"))
    # Pipeline tasks, failures and everything else still pass.
    assert quiet.filter(record("celery.app.trace", logging.INFO, "Task devpulse.aggregate[abc] succeeded"))
    assert quiet.filter(record("celery.app.trace", logging.ERROR,
                               "Task devpulse.maintenance.relay_outbox[abc] raised unexpected: boom"))
    assert quiet.filter(record("devpulse.maintenance", logging.INFO, "outbox relay: {'due': 1, 'published': 1}"))
