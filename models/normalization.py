"""Normalization job: one `normalized_events` row per raw event of a batch, upserted by (developer_id, event_id)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from activity.normalization import normalize
from models.bulk import insert_values
from models.event_reader import batch_rows, lean_event
from models.tables import Batch

# The `normalized_events` columns, in the order of `normalized_row`.
COLUMNS = ("developer_id", "event_id", "batch_id", "seq", "type", "source_schema_version", "ts",
           "utc_offset_minutes", "session_id", "language", "file_path", "payload")
_UPDATED = COLUMNS[2:]
# Recomputed from the raw event every time: running twice changes nothing.
_ON_CONFLICT = ("ON CONFLICT (developer_id, event_id) DO UPDATE SET "
                + ", ".join(f"{c} = EXCLUDED.{c}" for c in _UPDATED))


def normalized_row(row: tuple[Any, ...], batch: Batch) -> tuple[Any, ...]:
    """The `normalized_events` row (in `COLUMNS` order) of one stored event (a row of `batch_rows`) of `batch`."""
    event = lean_event(row)
    fields = normalize(event)
    return (batch.developer_id, event.event_id, str(batch.batch_id), event.seq, event.type, row[2], event.ts,
            event.utc_offset_minutes, event.session_id, fields.language, fields.file_path, fields.payload)


JOB = "normalize"


def normalize_batch(session: Session, batch: Batch) -> dict[str, Any]:
    """Normalize the batch's own events. Not coalesced like aggregation and detection: its work is per event, so
    covering other batches saves nothing, and measured (make bench --quick, phase D) it cost throughput."""
    rows = [normalized_row(r, batch)
            for r in batch_rows(session, batch.batch_id, developer_id=batch.developer_id, job=JOB)]
    insert_values(session, "normalized_events", COLUMNS, rows, json_columns=frozenset({"payload"}),
                  suffix=_ON_CONFLICT)
    return {"normalized": len(rows)}
