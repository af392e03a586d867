"""Every periodic job, in one declarative schedule (run by `celery -A tasks beat`)."""

from __future__ import annotations

BEAT_SCHEDULE = {
    "outbox-relay": {"task": "devpulse.maintenance.relay_outbox", "schedule": 2.0},
    "sweep-stuck-batches": {"task": "devpulse.maintenance.sweep_stuck_batches", "schedule": 30.0},
    "seal-audit-log": {"task": "devpulse.maintenance.seal_audit_log", "schedule": 10.0},
}
