"""GET /api/workflow/batches/<batch_id>: a batch's lifecycle, for its developer or an admin."""

from __future__ import annotations

import uuid

from flask import Blueprint, g, jsonify

from app.auth import require_admin, require_token
from app.errors import ApiError
from app.storage import storage
from models.audit_chain import batch_trail
from models.batch_status import batch_view

bp = Blueprint("batches", __name__)


def parse_batch_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(400, "invalid_batch_id", "batch_id must be a UUID.",
                       [{"field": "batch_id", "message": "not a UUID"}]) from None


def visible_batch(batch_id: str) -> dict:
    bid = parse_batch_id(batch_id)
    # StorageUnavailable becomes a 503 with Retry-After in app/errors.py.
    view = storage().transaction(lambda s: batch_view(s, bid))
    # Another developer's batch is reported as missing: its existence is not theirs to learn.
    if view is None or not g.principal.may_act_for(view["developer_id"]):
        raise ApiError(404, "batch_not_found", f"No batch {bid} visible to this token.",
                       [{"field": "batch_id", "message": "not found"}])
    return view


@bp.get("/api/workflow/batches/<batch_id>")
@require_token
def get_batch(batch_id: str):  # type: ignore[no-untyped-def]
    view = visible_batch(batch_id)
    view["correlation_id_of_request"] = g.correlation_id
    return jsonify(view)


@bp.get("/api/workflow/batches/<batch_id>/audit")
@require_admin
def get_batch_audit(batch_id: str):  # type: ignore[no-untyped-def]
    """The batch's audit trail in order, with each record's seal state (admin only)."""
    bid = parse_batch_id(batch_id)
    # StorageUnavailable becomes a 503 with Retry-After in app/errors.py.
    trail = storage().transaction(lambda s: batch_trail(s, bid))
    if trail is None:
        raise ApiError(404, "batch_not_found", f"No batch {bid}.", [{"field": "batch_id", "message": "not found"}])
    return jsonify({"batch_id": str(bid), "records": trail})
