"""Streamed exports of a developer's data (own developer or admin).

GET /api/developers/<id>/events/export?from=&to=&format=ndjson|csv|parquet
GET /api/developers/<id>/metrics/export?granularity=hour|day|week&from=&to=&format=csv|ndjson

Both answer as they read (`Content-Disposition: attachment`): memory stays flat whatever the range (one chunk
of rows at a time, see models/export.py). `from` is inclusive and `to` exclusive, like the metrics endpoints;
a plain date means local midnight in the developer's time zone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, request, stream_with_context
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from app import export_formats
from app.auth import ensure_may_act_for, require_token
from app.errors import ApiError
from app.query_params import time_param
from app.storage import database, storage
from models.developer_settings import preferences
from models.export import EVENT_COLUMNS, event_json_lines, event_rows
from models.metrics_read import GRANULARITIES, METRIC_NAMES, metric_buckets

bp = Blueprint("export_api", __name__)

_UNSAFE_IN_FILE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = request.args.get(name, default)
    if value not in allowed:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be one of: {', '.join(allowed)}.",
                       [{"field": name, "message": f"got '{value[:20]}'"}])
    return value


def _range(developer_id: str) -> tuple[ZoneInfo, datetime | None, datetime | None]:
    zone = ZoneInfo(storage().transaction(lambda s: preferences(s, developer_id)).timezone)
    start, end = time_param("from", zone), time_param("to", zone)
    if start and end and start > end:
        raise ApiError(400, "invalid_parameter", "'from' must not be after 'to'.",
                       [{"field": "from", "message": "after 'to'"}])
    return zone, start, end


def file_name(developer_id: str, what: str, start: datetime | None, end: datetime | None, fmt: str) -> str:
    """e.g. `devpulse-dev-1-events-2026-11-01-to-2026-11-27.ndjson` (ASCII only, safe in any header)."""
    def day(moment: datetime | None, open_end: str) -> str:
        return moment.astimezone(UTC).date().isoformat() if moment else open_end

    who = _UNSAFE_IN_FILE_NAME.sub("_", developer_id)[:64]
    return f"devpulse-{who}-{what}-{day(start, 'start')}-to-{day(end, 'now')}.{fmt}"


def _attachment(body: Iterator[bytes], fmt: str, name: str) -> Response:
    response = Response(stream_with_context(body), mimetype=export_formats.MEDIA_TYPES[fmt])
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def event_export(db: Any, developer_id: str, fmt: str, start: datetime | None,
                 end: datetime | None) -> Iterator[bytes]:
    """The bytes of an event export (shared with the CLI)."""
    if fmt == "ndjson":
        return export_formats.ndjson_lines(event_json_lines(db, developer_id, start=start, end=end))
    if fmt == "csv":
        return export_formats.csv_rows(EVENT_COLUMNS, event_rows(db, developer_id, start=start, end=end))
    # Smaller chunks for Parquet: each row is held as Python values and as Arrow arrays until its row group is
    # written (~5 KB a row at the peak); 2,000-row groups keep a download's peak near 10 MB.
    return export_formats.parquet_events(event_rows(db, developer_id, start=start, end=end,
                                                    chunk=export_formats.PARQUET_ROW_GROUP))


@bp.get("/api/developers/<developer_id>/events/export")
@require_token
def export_events(developer_id: str) -> ResponseReturnValue:
    ensure_may_act_for(developer_id)
    fmt = _choice("format", export_formats.EVENT_FORMATS, "ndjson")
    _, start, end = _range(developer_id)
    return _attachment(event_export(database(), developer_id, fmt, start, end), fmt,
                       file_name(developer_id, "events", start, end, fmt))


def metric_export(session_work: Any, developer_id: str, granularity: str, fmt: str, start: datetime | None,
                  end: datetime | None) -> Iterator[bytes]:
    """The bytes of a metrics export: one row per bucket, `bucket_start` with its UTC offset (local for days and
    weeks, UTC for hours), the metrics in the API's order."""
    def read(s: Session) -> tuple[str, list[Any]]:
        prefs = preferences(s, developer_id)
        return prefs.timezone, metric_buckets(s, developer_id, granularity,  # type: ignore[arg-type]
                                              timezone=prefs.timezone, start=start, end=end)

    # Buckets are at most one per hour of the range: read in one transaction, written as they are formatted.
    timezone, buckets = session_work(read)
    zone = UTC if granularity == "hour" else ZoneInfo(timezone)
    records = export_formats.metric_records(buckets, METRIC_NAMES, lambda m: m.astimezone(zone).isoformat())
    if fmt == "csv":
        return export_formats.csv_rows(("bucket_start", *METRIC_NAMES), records)
    return _metric_lines(records)


def _metric_lines(records: Iterator[list[list[Any]]]) -> Iterator[bytes]:
    import json

    names = ("bucket_start", *METRIC_NAMES)
    for chunk in records:
        yield "".join(json.dumps(dict(zip(names, row, strict=True))) + "\n" for row in chunk).encode("utf-8")


@bp.get("/api/developers/<developer_id>/metrics/export")
@require_token
def export_metrics(developer_id: str) -> ResponseReturnValue:
    ensure_may_act_for(developer_id)
    fmt = _choice("format", export_formats.METRIC_FORMATS, "csv")
    granularity = _choice("granularity", GRANULARITIES, "day")
    _, start, end = _range(developer_id)
    body = metric_export(storage().transaction, developer_id, granularity, fmt, start, end)
    return _attachment(body, fmt, file_name(developer_id, f"metrics-{granularity}", start, end, fmt))
