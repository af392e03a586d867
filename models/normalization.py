"""Normalization job: one `normalized_events` row per raw event of a batch, upserted by event_id."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from activity.languages import canonical_language, normalize_file_path
from models.event_reader import batch_events, to_normalized
from models.tables import Batch, NormalizedEvent, RawEvent

_FILE_KEYS = ("file", "entity")


def normalized_row(row: RawEvent) -> dict[str, Any]:
    event = to_normalized(row)
    payload = dict(event.payload)
    raw_file = next((payload[k] for k in _FILE_KEYS if isinstance(payload.get(k), str)), None)
    if event.type == "editor.heartbeat" and payload.get("type") not in (None, "file"):
        raw_file = None  # a heartbeat's entity is a domain or an app name, not a path
    workspace = payload.get("workspace") if isinstance(payload.get("workspace"), str) else None
    file_path = normalize_file_path(raw_file, workspace)
    language = canonical_language(payload.get("language") if isinstance(payload.get("language"), str) else None,
                                  file_path)
    if file_path is not None and "file" in payload:
        payload["file"] = file_path
    if language is not None and "language" in payload:
        payload["language"] = language
    return {
        "event_id": row.event_id,
        "batch_id": row.batch_id,
        "seq": row.seq,
        "developer_id": row.developer_id,
        "type": event.type,
        "source_schema_version": row.schema_version,
        "ts": event.ts,
        "utc_offset_minutes": event.utc_offset_minutes,
        "session_id": event.session_id,
        "language": language,
        "file_path": file_path,
        "payload": payload,
    }


_COLUMNS = ("batch_id", "seq", "developer_id", "type", "source_schema_version", "ts", "utc_offset_minutes",
            "session_id", "language", "file_path", "payload")
_insert = insert(NormalizedEvent)
_UPSERT = _insert.on_conflict_do_update(
    index_elements=[NormalizedEvent.event_id], set_={c: _insert.excluded[c] for c in _COLUMNS}
)


def normalize_batch(session: Session, batch: Batch) -> dict[str, int]:
    rows = [normalized_row(r) for r in batch_events(session, batch.batch_id)]
    if rows:
        # Recomputed from the raw event every time: running twice changes nothing. Executed as an
        # executemany of one cached statement (not a VALUES list compiled anew for every batch).
        session.execute(_UPSERT, rows)
    return {"normalized": len(rows)}
