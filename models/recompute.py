"""Background recomputation of one developer's derived rows after a settings change (or a migration).

A pending recompute is a range on the developer's settings row, done in bounded chunks (one day of events at
a time) by a beat task: each chunk recomputes the metric slots and re-derives the danger episodes of that
day from the stored events, in one transaction under the same advisory locks as the pipeline, so chunks,
retries and concurrent batches are idempotent and never interleave badly. Alerts found for past periods
are stored stale and never pushed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from activity.danger import DangerThresholds
from activity.metrics import slot_ceil, slot_floor
from models.aggregation import SlotRange, lock_developer, recompute_slots
from models.danger_detection import detect_range
from models.developer_settings import preferences
from models.tables import DeveloperSettings, RawEvent

CHUNK = timedelta(days=1)


def request_recompute(session: Session, developer_id: str) -> DeveloperSettings | None:
    """Mark the developer's whole stored history for recomputation (None when nothing is stored)."""
    first, last = session.execute(
        select(func.min(RawEvent.corrected_ts), func.max(RawEvent.corrected_ts))
        .where(RawEvent.developer_id == developer_id)
    ).one()
    row = session.get(DeveloperSettings, developer_id, with_for_update=True)
    if row is None:
        row = DeveloperSettings(developer_id=developer_id)
        session.add(row)
    if first is None:
        row.recompute_from = row.recompute_until = row.recompute_done_until = row.recompute_requested_at = None
        session.flush()
        return None
    row.recompute_from = slot_floor(first)
    row.recompute_until = slot_ceil(last) + CHUNK
    row.recompute_done_until = row.recompute_from
    row.recompute_requested_at = datetime.now(UTC)
    session.flush()
    return row


@dataclass(frozen=True)
class ChunkResult:
    developer_id: str
    done_until: datetime
    finished: bool


def pending_developers(session: Session, limit: int = 20) -> list[str]:
    return list(session.execute(
        select(DeveloperSettings.developer_id).where(DeveloperSettings.recompute_from.is_not(None))
        .order_by(DeveloperSettings.recompute_requested_at).limit(limit)
    ).scalars())


def recompute_chunk(session: Session, developer_id: str, *, thresholds: DangerThresholds,
                    max_debug: timedelta) -> ChunkResult | None:
    """Recompute the next chunk of the developer's pending range (None when nothing is pending)."""
    lock_developer(session, "metrics", developer_id)
    lock_developer(session, "danger", developer_id)
    row = session.get(DeveloperSettings, developer_id, with_for_update=True)
    if row is None or row.recompute_from is None or row.recompute_until is None:
        return None
    prefs = preferences(session, developer_id)
    start = row.recompute_done_until or row.recompute_from
    end = min(start + CHUNK, row.recompute_until)
    idle = timedelta(seconds=prefs.idle_timeout_seconds)
    recompute_slots(session, developer_id, SlotRange.with_context(start, end, idle + max_debug),
                    idle_timeout_seconds=prefs.idle_timeout_seconds, max_debug=max_debug)
    detect_range(session, developer_id, start, end,
                 thresholds=thresholds.for_developer(prefs.idle_timeout_seconds),
                 timezone=prefs.timezone if prefs.timezone_set else None)
    finished = end >= row.recompute_until
    if finished:
        row.recompute_from = row.recompute_until = row.recompute_done_until = row.recompute_requested_at = None
    else:
        row.recompute_done_until = end
    return ChunkResult(developer_id, end, finished)


def progress(row: DeveloperSettings | None) -> dict[str, object]:
    """What the settings endpoint shows of a pending recompute."""
    if row is None or row.recompute_from is None or row.recompute_until is None:
        return {"pending": False, "progress": 1.0}
    done = (row.recompute_done_until or row.recompute_from) - row.recompute_from
    whole = row.recompute_until - row.recompute_from
    return {"pending": True, "progress": round(done / whole, 4) if whole else 0.0,
            "from": row.recompute_from.isoformat(), "until": row.recompute_until.isoformat(),
            "done_until": (row.recompute_done_until or row.recompute_from).isoformat()}
