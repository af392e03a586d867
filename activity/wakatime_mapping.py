"""WakaTime heartbeat -> native devpulse event: the one mapping shared by the WakaTime-compatible endpoint
(app/compat_wakatime.py, heartbeats sent live) and the WakaTime export import (app/wakatime_import.py), so a
heartbeat gets the same event id and the same stored event whichever way it arrives. Identifiers and payload
normalization are described in app/compat_wakatime.py's docstring. Pure: no Flask, Celery, database or network.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from activity.catalog import field_specs

WAKATIME_NAMESPACE = uuid.UUID("c5683437-f003-51eb-8338-4998b98e3703")
HEARTBEAT_EVENT_TYPE = "editor.heartbeat"
HEARTBEAT_SCHEMA_VERSION = "1.1"
EVENT_ID_FIELDS = ("entity", "type", "category", "project", "branch", "language", "is_write", "time")

_SPECS = field_specs(HEARTBEAT_EVENT_TYPE, HEARTBEAT_SCHEMA_VERSION)
_NULL_MEANS_ABSENT = frozenset(name for name, spec in _SPECS.items() if not spec.required and not spec.nullable)
_COUNT_FIELDS = frozenset(name for name, spec in _SPECS.items() if spec.kind == "count")
_DIGITS = re.compile(r"[0-9]{1,15}")

# Timestamps for heartbeats whose `time` cannot be one; validation rejects each of them (see `heartbeat_timestamp`).
_UNUSABLE_TIME = "1970-01-01T00:00:00Z"
_FAR_PAST = "0001-01-01T00:00:00Z"
_FAR_FUTURE = "9999-12-31T23:59:59Z"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _normalized_time(value: Any) -> Any:
    if _is_number(value):
        try:
            return float(value)
        except OverflowError:  # an int beyond float range: keep it (validation rejects it anyway)
            return value
    return value


def heartbeat_event_id(developer_id: str, heartbeat: Any) -> uuid.UUID:
    if isinstance(heartbeat, dict):
        fields = [heartbeat.get(name) for name in EVENT_ID_FIELDS]
        fields[-1] = _normalized_time(fields[-1])
        name = canonical_json([developer_id, *fields])
    else:  # not a heartbeat at all; it is rejected, but still gets a stable id
        name = canonical_json([developer_id, "not-an-object", heartbeat])
    return uuid.uuid5(WAKATIME_NAMESPACE, "heartbeat:" + name)


def request_batch_id(developer_id: str, body: Any) -> uuid.UUID:
    digest = hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()
    return uuid.uuid5(WAKATIME_NAMESPACE, f"batch:{developer_id}:{digest}")


def import_batch_id(job_id: str, batch_index: int) -> uuid.UUID:
    """An import's batch id: fixed by (job, position), so a resumed job resends a batch under the same id."""
    return uuid.uuid5(WAKATIME_NAMESPACE, f"import:{job_id}:{batch_index}")


def rfc3339(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def heartbeat_timestamp(heartbeat: Any) -> str:
    """RFC 3339 (UTC) of the heartbeat's epoch-seconds `time`.

    When `time` is missing or not a finite number the payload validation rejects the event, so the fixed
    placeholder is never stored; a number too large for a datetime maps to year 1 or 9999, which the event-age
    checks reject (too old / in the future).
    """
    value = heartbeat.get("time") if isinstance(heartbeat, dict) else None
    if not isinstance(value, int | float) or not _is_number(value) or not math.isfinite(value):
        return _UNUSABLE_TIME
    try:
        return rfc3339(datetime.fromtimestamp(value, UTC))
    except (OverflowError, ValueError, OSError):
        return _FAR_PAST if value < 0 else _FAR_FUTURE


def heartbeat_payload(heartbeat: Any) -> Any:
    """The heartbeat as the event payload, normalized as described in app/compat_wakatime.py's docstring."""
    if not isinstance(heartbeat, dict):
        return heartbeat  # rejected by the event schema: the payload must be an object
    payload: dict[str, Any] = {}
    for key, value in heartbeat.items():
        if value is None and key in _NULL_MEANS_ABSENT:
            continue
        if key in _COUNT_FIELDS and isinstance(value, str) and _DIGITS.fullmatch(value):
            value = int(value)
        payload[key] = value
    return payload


def native_batch_body(developer_id: str, heartbeats: Sequence[Any], *, batch_id: uuid.UUID, sent_at: datetime,
                      client: dict[str, str]) -> dict[str, Any]:
    """The native batch body for these heartbeats, one `editor.heartbeat` event each."""
    return {
        "batch_id": str(batch_id),
        "developer_id": developer_id,
        "sent_at": rfc3339(sent_at),
        "schema_version": HEARTBEAT_SCHEMA_VERSION,
        "client": client,
        "events": [
            {
                "event_id": str(heartbeat_event_id(developer_id, hb)),
                "type": HEARTBEAT_EVENT_TYPE,
                "timestamp": heartbeat_timestamp(hb),
                "payload": heartbeat_payload(hb),
            }
            for hb in heartbeats
        ],
    }
