"""GET /api/workflow/batches/<batch_id>: a batch's lifecycle, for its developer or an admin.

A batch id is unique per developer only. A developer token looks up its own developer's batch of that id; an
admin token looks the id up across developers and, when several use it, answers 409 `ambiguous_batch_id`
naming them: `?developer_id=` chooses one.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue

from app.auth import require_admin, require_token
from app.errors import ApiError
from app.event_pages import event_view, next_cursor, page_params
from app.query_params import uuid_param
from app.storage import storage
from models.audit_chain import batch_trail
from models.batch_lifecycle import batch_owners, batch_with_jobs
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
    return uuid_param("batch_id", value)


def _not_found(bid: uuid.UUID) -> ApiError:
    return ApiError(404, "batch_not_found", f"No batch {bid} visible to this token.",
                    [{"field": "batch_id", "message": "not found"}])


def batch_owner(bid: uuid.UUID) -> str:
    """Whose batch `bid` the request means: the token's developer, or for an admin `?developer_id=` or else the
    one developer who uses that id (409 `ambiguous_batch_id` naming them when several do; 404 when none)."""
    principal = g.principal
    requested = request.args.get("developer_id")
    if not principal.is_admin:
        # Another developer's batch is reported as missing: its existence is not theirs to learn.
        if principal.developer_id is None or requested not in (None, principal.developer_id):
            raise _not_found(bid)
        return str(principal.developer_id)
    if requested:
        return requested
    # StorageUnavailable becomes a 503 with Retry-After in app/errors.py.
    owners = storage().transaction(lambda s: batch_owners(s, bid))
    if not owners:
        raise _not_found(bid)
    if len(owners) > 1:
        raise ApiError(409, "ambiguous_batch_id",
                       f"Batch id {bid} is used by {len(owners)} developers ({', '.join(owners)}); "
                       "choose one with ?developer_id=.",
                       [{"field": "developer_id", "message": f"one of: {', '.join(owners)}"}])
    return owners[0]


def visible_batch(batch_id: str) -> dict:
    bid = parse_batch_id(batch_id)
    developer_id = batch_owner(bid)
    found = storage().transaction(lambda s: batch_with_jobs(s, developer_id, bid))
    if found is None:
        raise _not_found(bid)
    return batch_view(*found)


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
    developer_id = batch_owner(bid)
    # StorageUnavailable becomes a 503 with Retry-After in app/errors.py.
    trail = storage().transaction(lambda s: batch_trail(s, developer_id, bid))
    if trail is None:
        raise ApiError(404, "batch_not_found", f"No batch {bid}.", [{"field": "batch_id", "message": "not found"}])
    return jsonify({"batch_id": str(bid), "developer_id": developer_id, "records": trail})


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
