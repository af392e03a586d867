"""GET /api/developers/<developer_id>/metrics?from=&to=&granularity=hour|day"""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from app.auth import ensure_may_act_for, require_token
from app.errors import ApiError
from app.query_params import time_param
from app.storage import storage
from models.aggregation import metric_rows
from models.tables import DeveloperMetric

bp = Blueprint("metrics_api", __name__)

_COLUMNS = [c.name for c in DeveloperMetric.__table__.columns
            if c.name not in ("developer_id", "granularity", "bucket_start", "computed_at")]


@bp.get("/api/developers/<developer_id>/metrics")
@require_token
def developer_metrics(developer_id: str):
    ensure_may_act_for(developer_id)
    granularity = request.args.get("granularity", "hour")
    if granularity not in ("hour", "day"):
        raise ApiError(400, "invalid_parameter", "'granularity' must be 'hour' or 'day'.",
                       [{"field": "granularity", "message": f"got '{granularity[:20]}'"}])
    start, end = time_param("from"), time_param("to")
    if start and end and start > end:
        raise ApiError(400, "invalid_parameter", "'from' must not be after 'to'.",
                       [{"field": "from", "message": "after 'to'"}])
    # StorageUnavailable becomes a 503 with Retry-After in app/errors.py.
    rows = storage().transaction(lambda s: metric_rows(s, developer_id, granularity, start, end))
    return jsonify({
        "developer_id": developer_id,
        "granularity": granularity,
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "buckets": [{"bucket_start": r.bucket_start.isoformat(), **{c: getattr(r, c) for c in _COLUMNS}}
                    for r in rows],
    })
