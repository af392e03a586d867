"""GET /api/workflow/batches/<batch_id>: a batch's lifecycle, for its developer or an admin."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, g, jsonify
from flask.typing import ResponseReturnValue

from app.auth import require_admin, require_token
from app.errors import ApiError
from app.event_pages import event_view, next_cursor, page_params
from app.storage import storage
from models.audit_chain import batch_trail
from models.batch_lifecycle import batch_with_jobs
from models.event_reader import stored_event_rows
from models.tables import Batch, BatchJob

bp = Blueprint("batches", __name__)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def batch_view(batch: Batch, jobs: list[BatchJob], quarantined: int = 0) -> dict[str, Any]:
    """The JSON of GET /api/workflow/batches/<id>: lifecycle, counts and per-job state."""
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
        # Accepted events that a job could not process: recorded and skipped (see models/quarantine.py).
        "quarantined": quarantined,
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


def parse_batch_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(400, "invalid_batch_id", "batch_id must be a UUID.",
                       [{"field": "batch_id", "message": "not a UUID"}]) from None


def visible_batch(batch_id: str) -> dict:
    bid = parse_batch_id(batch_id)
    # StorageUnavailable becomes a 503 with Retry-After in app/errors.py.
    found = storage().transaction(lambda s: batch_with_jobs(s, bid))
    view = batch_view(*found) if found is not None else None
    # Another developer's batch is reported as missing: its existence is not theirs to learn.
    if view is None or not g.principal.may_act_for(view["developer_id"]):
        raise ApiError(404, "batch_not_found", f"No batch {bid} visible to this token.",
                       [{"field": "batch_id", "message": "not found"}])
    return view


@bp.get("/api/workflow/batches/<batch_id>")
@require_token
def get_batch(batch_id: str):
    view = visible_batch(batch_id)
    view["correlation_id_of_request"] = g.correlation_id
    return jsonify(view)


@bp.get("/api/workflow/batches/<batch_id>/audit")
@require_admin
def get_batch_audit(batch_id: str):
    """The batch's audit trail in order, with each record's seal state (admin only)."""
    bid = parse_batch_id(batch_id)
    # StorageUnavailable becomes a 503 with Retry-After in app/errors.py.
    trail = storage().transaction(lambda s: batch_trail(s, bid))
    if trail is None:
        raise ApiError(404, "batch_not_found", f"No batch {bid}.", [{"field": "batch_id", "message": "not found"}])
    return jsonify({"batch_id": str(bid), "records": trail})


@bp.get("/api/workflow/batches/<batch_id>/events")
@require_token
def get_batch_events(batch_id: str) -> ResponseReturnValue:
    """The batch's stored events in batch (seq) order, paginated (`limit`, `cursor`)."""
    view = visible_batch(batch_id)
    limit, after = page_params()
    rows = storage().transaction(lambda s: stored_event_rows(
        s, developer_id=view["developer_id"], batch_id=uuid.UUID(view["batch_id"]), after=after, limit=limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return jsonify({"batch_id": view["batch_id"], "events": [event_view(r) for r in rows],
                    "next_cursor": next_cursor((rows[-1].seq,)) if more else None})
