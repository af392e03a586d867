"""Every periodic job, in one declarative schedule (run by `celery -A tasks beat`).

Each entry expires after its own period: while the workers are down, runs pile up in the queue, and
only the newest is worth doing once they come back.
"""

from __future__ import annotations

from typing import Any


def _every(task: str, seconds: float) -> dict[str, Any]:
    return {"task": f"devpulse.maintenance.{task}", "schedule": seconds, "options": {"expires": seconds}}


BEAT_SCHEDULE = {
    "outbox-relay": _every("relay_outbox", 2.0),
    "alert-notification-relay": _every("relay_alert_notifications", 2.0),
    # Lost batches are found by evidence (leases, the broker's marker and queues): looking often is cheap, and
    # recovery takes at most a lease plus this period.
    "sweep-stuck-batches": _every("sweep_stuck_batches", 10.0),
    "seal-audit-log": _every("seal_audit_log", 10.0),
    "recompute-developers": _every("recompute_developers", 5.0),
}
