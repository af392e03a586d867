"""Query-string parameters shared by the read endpoints, with 400s that name the parameter."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, time, tzinfo

from flask import request

from activity.clock import parse_rfc3339
from app.errors import ApiError

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# A '+' in a query string decodes as a space: "2024-05-01T10:00:00 02:00" is what arrives for "+02:00".
_SPACE_FOR_PLUS = re.compile(r"T\d{2}:\d{2}(:\d{2}(\.\d+)?)? \d{2}:\d{2}$")


def uuid_param(name: str, value: str) -> uuid.UUID:
    """A path or query value that must be a UUID: 400 `invalid_<name>` naming it otherwise."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(400, f"invalid_{name}", f"{name} must be a UUID.",
                       [{"field": name, "message": "not a UUID"}]) from None


def time_param(name: str, zone: tzinfo = UTC) -> datetime | None:
    """An RFC 3339 timestamp, or a plain date meaning local midnight in `zone`; returned in UTC (PostgreSQL
    refuses offsets beyond ±15:59 that RFC 3339 allows)."""
    return parse_time_value(name, request.args.get(name), zone)


def parse_time_value(name: str, value: str | None, zone: tzinfo = UTC) -> datetime | None:
    """`time_param` for a value from elsewhere (the command line); errors name `name`."""
    if not value:
        return None
    if _DATE.fullmatch(value):
        try:
            return datetime.combine(date.fromisoformat(value), time(), zone).astimezone(UTC)
        except ValueError as exc:
            raise ApiError(400, "invalid_parameter", f"'{name}' is not a valid date.",
                           [{"field": name, "message": str(exc)[:200]}]) from exc
    if _SPACE_FOR_PLUS.search(value):
        raise ApiError(400, "invalid_parameter",
                       f"'{name}' has a space where its UTC offset's '+' should be: encode '+' as %2B in a URL.",
                       [{"field": name, "message": "encode '+' as %2B (a bare '+' in a query string means a space)"}])
    try:
        return parse_rfc3339(value).astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        raise ApiError(400, "invalid_parameter",
                       f"'{name}' must be an RFC 3339 timestamp with an offset, or a date (YYYY-MM-DD).",
                       [{"field": name, "message": str(exc)[:200]}]) from exc
