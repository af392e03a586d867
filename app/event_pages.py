"""Paginated lists of stored events (a batch's, an alert's): the JSON shape and an opaque keyset cursor."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from flask import request
from sqlalchemy import Row

from app.errors import ApiError

MAX_LIMIT = 1000


def page_params() -> tuple[int, tuple[Any, ...] | None]:
    """(limit, keyset position after which to continue) from `?limit=&cursor=`, 400s naming the parameter."""
    raw_limit = request.args.get("limit", "100")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ApiError(400, "invalid_parameter", f"'limit' must be a whole number from 1 to {MAX_LIMIT}.",
                       [{"field": "limit", "message": f"got '{raw_limit[:20]}'"}])
    cursor = request.args.get("cursor")
    if not cursor:
        return int(raw_limit), None
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        after = tuple(datetime.fromisoformat(v[3:]) if isinstance(v, str) and v.startswith("ts:") else v
                      for v in values)
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError):
        raise ApiError(400, "invalid_parameter", "'cursor' is not a cursor this API returned.",
                       [{"field": "cursor", "message": "malformed"}]) from None
    return int(raw_limit), after


def next_cursor(position: tuple[Any, ...]) -> str:
    values = [f"ts:{v.isoformat()}" if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v
              for v in position]
    return base64.urlsafe_b64encode(json.dumps(values).encode("ascii")).decode("ascii")


def event_view(row: Row[Any]) -> dict[str, Any]:
    return {
        "event_id": str(row.event_id),
        "batch_id": str(row.batch_id),
        "seq": row.seq,
        "type": row.type,
        "schema_version": row.schema_version,
        "corrected_timestamp": row.corrected_ts.isoformat(),
        "received_at": row.received_at.isoformat(),
        "event": row.raw,
    }
