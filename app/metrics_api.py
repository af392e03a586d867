"""Developer metrics: GET /api/developers/<id>/metrics (hour | day | week buckets) and /breakdown."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from app.auth import ensure_may_act_for, require_token
from app.errors import ApiError
from app.query_params import time_param
from app.storage import storage
from models.developer_settings import DeveloperPreferences, preferences
from models.metrics_read import GRANULARITIES, Bucket, breakdown, metric_buckets

bp = Blueprint("metrics_api", __name__)


def _range(zone: ZoneInfo) -> tuple[datetime | None, datetime | None]:
    start, end = time_param("from", zone), time_param("to", zone)
    if start and end and start > end:
        raise ApiError(400, "invalid_parameter", "'from' must not be after 'to'.",
                       [{"field": "from", "message": "after 'to'"}])
    return start, end


def _local(moment: datetime, zone: ZoneInfo) -> str:
    return moment.astimezone(zone).isoformat()


@bp.get("/api/developers/<developer_id>/metrics")
@require_token
def developer_metrics(developer_id: str) -> ResponseReturnValue:
    ensure_may_act_for(developer_id)
    granularity = request.args.get("granularity", "hour")
    if granularity not in GRANULARITIES:
        raise ApiError(400, "invalid_parameter", "'granularity' must be 'hour', 'day' or 'week'.",
                       [{"field": "granularity", "message": f"got '{granularity[:20]}'"}])

    def read(s: Session) -> tuple[DeveloperPreferences, datetime | None, datetime | None, list[Bucket]]:
        # One transaction: the developer's zone decides what a plain date in `from`/`to` means.
        prefs = preferences(s, developer_id)
        start, end = _range(ZoneInfo(prefs.timezone))
        return prefs, start, end, metric_buckets(s, developer_id, granularity,
                                                 timezone=prefs.timezone, start=start, end=end)

    # StorageUnavailable becomes a 503 with Retry-After in app/errors.py.
    prefs, start, end, buckets = storage().transaction(read)
    zone = ZoneInfo(prefs.timezone)
    # Hours are UTC hours; days and ISO weeks start at local midnight in the developer's zone.
    shown = UTC if granularity == "hour" else zone
    return jsonify({
        "developer_id": developer_id,
        "granularity": granularity,
        "timezone": prefs.timezone,
        "from": start.isoformat() if start else None,
        "to": end.isoformat() if end else None,
        "buckets": [{"bucket_start": b.bucket_start.astimezone(shown).isoformat(), **b.values} for b in buckets],
    })


@bp.get("/api/developers/<developer_id>/breakdown")
@require_token
def developer_breakdown(developer_id: str) -> ResponseReturnValue:
    """Active seconds per local day by language or by project."""
    ensure_may_act_for(developer_id)
    by = request.args.get("by", "language")
    if by not in ("language", "project"):
        raise ApiError(400, "invalid_parameter", "'by' must be 'language' or 'project'.",
                       [{"field": "by", "message": f"got '{by[:20]}'"}])

    def read(s: Session) -> tuple[DeveloperPreferences, datetime | None, datetime | None,
                                  list[tuple[datetime, str, float]]]:
        prefs = preferences(s, developer_id)
        start, end = _range(ZoneInfo(prefs.timezone))
        return prefs, start, end, breakdown(s, developer_id, by, timezone=prefs.timezone, start=start, end=end)

    prefs, start, end, rows = storage().transaction(read)
    zone = ZoneInfo(prefs.timezone)
    days: dict[str, dict[str, Any]] = {}
    for day, key, seconds in rows:
        entry = days.setdefault(_local(day, zone), {"day_start": _local(day, zone), "total_seconds": 0.0,
                                                    "items": []})
        entry["items"].append({"name": key, "active_seconds": seconds})
        entry["total_seconds"] += seconds
    return jsonify({"developer_id": developer_id, "by": by, "timezone": prefs.timezone,
                    "from": start.isoformat() if start else None, "to": end.isoformat() if end else None,
                    "days": list(days.values())})
