"""Normalization job: one `normalized_events` row per raw event of a batch, upserted by (developer_id, event_id)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from activity.normalization import normalize
from models.event_reader import batch_rows, lean_event
from models.tables import Batch, NormalizedEvent


def normalized_row(row: tuple[Any, ...], batch: Batch) -> dict[str, Any]:
    """The `normalized_events` row of one stored event (a row of `batch_rows`) of `batch`."""
    event = lean_event(row)
    fields = normalize(event)
    return {
        "event_id": event.event_id,
        "batch_id": batch.batch_id,
        "seq": event.seq,
        "developer_id": batch.developer_id,
        "type": event.type,
        "source_schema_version": row[2],
        "ts": event.ts,
        "utc_offset_minutes": event.utc_offset_minutes,
        "session_id": event.session_id,
        "language": fields.language,
        "file_path": fields.file_path,
        "payload": fields.payload,
    }


JOB = "normalize"

_COLUMNS = ("batch_id", "seq", "type", "source_schema_version", "ts", "utc_offset_minutes",
            "session_id", "language", "file_path", "payload")
_insert = insert(NormalizedEvent)
_UPSERT = _insert.on_conflict_do_update(
    index_elements=[NormalizedEvent.developer_id, NormalizedEvent.event_id],
    set_={c: _insert.excluded[c] for c in _COLUMNS},
)


def normalize_batch(session: Session, batch: Batch) -> dict[str, Any]:
    """Normalize the batch's own events. Not coalesced like aggregation and detection: its work is per event, so
    covering other batches saves nothing, and measured (make bench --quick, phase D) it cost throughput."""
    rows = [normalized_row(r, batch)
            for r in batch_rows(session, batch.batch_id, developer_id=batch.developer_id, job=JOB)]
    if rows:
        # Recomputed from the raw event every time: running twice changes nothing. Executed as an
        # executemany of one cached statement (not a VALUES list compiled anew for every batch).
        session.execute(_UPSERT, rows)
    return {"normalized": len(rows)}
