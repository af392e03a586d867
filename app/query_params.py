"""Query-string parameters shared by the read endpoints, with 400s that name the parameter."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import request

from activity.clock import parse_rfc3339
from app.errors import ApiError


def time_param(name: str) -> datetime | None:
    """An RFC 3339 timestamp, in UTC: PostgreSQL refuses offsets beyond ±15:59 that RFC 3339 allows."""
    value = request.args.get(name)
    if not value:
        return None
    try:
        return parse_rfc3339(value).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ApiError(400, "invalid_parameter", f"'{name}' must be an RFC 3339 timestamp with an offset.",
                       [{"field": name, "message": str(exc)[:200]}]) from exc
