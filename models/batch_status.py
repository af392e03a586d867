"""Reading a batch's lifecycle for the status endpoint and the operator CLI."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.tables import Batch, BatchJob


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def batch_view(session: Session, batch_id: uuid.UUID) -> dict[str, Any] | None:
    batch = session.get(Batch, batch_id)
    if batch is None:
        return None
    jobs = session.execute(select(BatchJob).where(BatchJob.batch_id == batch_id).order_by(BatchJob.job)).scalars()
    return {
        "batch_id": str(batch.batch_id),
        "developer_id": batch.developer_id,
        "correlation_id": batch.correlation_id,
        "status": batch.status,
        "source": batch.source,
        "received": batch.received,
        "accepted": batch.accepted,
        "duplicates": batch.duplicates,
        "rejected": batch.rejected,
        "first_ts": _iso(batch.first_ts),
        "last_ts": _iso(batch.last_ts),
        "received_at": _iso(batch.received_at),
        "sent_at": _iso(batch.sent_at),
        "dispatched_at": _iso(batch.dispatched_at),
        "processing_started_at": _iso(batch.processing_started_at),
        "completed_at": _iso(batch.completed_at),
        "updated_at": _iso(batch.updated_at),
        "replay_count": batch.replay_count,
        "dispatch_count": batch.dispatch_count,
        "last_error": batch.last_error,
        "jobs": {
            job.job: {
                "status": job.status,
                "attempts": job.attempts,
                "task_id": job.task_id,
                "is_replay": job.is_replay,
                "started_at": _iso(job.started_at),
                "finished_at": _iso(job.finished_at),
                "duration_ms": job.duration_ms,
                "error": job.error,
            }
            for job in jobs
        },
    }
