"""Aggregation job: recompute a developer's metric buckets touched by a batch, from stored events.

Never incremented: the touched buckets are deleted and rebuilt from every
stored event that can affect them, under a per-developer advisory lock, so
duplicates, retries, replays and out-of-order batches all converge on what a
single in-order pass would give.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from activity.metrics import METRIC_NAMES, compute_metrics, debug_intervals
from models.event_reader import debug_related_events, developer_events, last_event_ts, merge_unique
from models.tables import Batch, DeveloperMetric


def lock_developer(session: Session, scope: str, developer_id: str) -> None:
    """Serialize recomputations of one developer's derived rows (released at commit)."""
    session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(f"{scope}:{developer_id}", 0))))


def _day_floor(ts: datetime) -> datetime:
    ts = ts.astimezone(UTC)
    return ts.replace(hour=0, minute=0, second=0, microsecond=0)


def recompute_window_start(
    session: Session, developer_id: str, first_ts: datetime, idle_timeout_seconds: int
) -> datetime:
    """The earliest UTC day whose buckets the new events can change.

    A new event changes its own bucket and the gap from its predecessor (at
    most `idle` earlier); beyond that only debug time reaches back, through a
    debug session that the new events close, extend or start.
    """
    reach = first_ts - timedelta(seconds=idle_timeout_seconds)
    last = last_event_ts(session, developer_id) or first_ts
    for start, end, _ in debug_intervals(debug_related_events(session, developer_id), last,
                                         idle_timeout_seconds=idle_timeout_seconds):
        if end >= reach and start < reach:
            reach = start
    return _day_floor(reach)


def aggregate_developer(session: Session, developer_id: str, first_ts: datetime, idle_timeout_seconds: int) -> int:
    lock_developer(session, "metrics", developer_id)
    since = recompute_window_start(session, developer_id, first_ts, idle_timeout_seconds)
    events = merge_unique(
        developer_events(session, developer_id, since=since),
        # Debug sessions that began earlier still count inside the window.
        debug_related_events(session, developer_id, before=since),
    )
    buckets = compute_metrics(events, idle_timeout_seconds=idle_timeout_seconds, since=since)
    session.execute(
        delete(DeveloperMetric).where(DeveloperMetric.developer_id == developer_id,
                                      DeveloperMetric.bucket_start >= since)
    )
    if buckets:
        session.execute(insert(DeveloperMetric), [
            {"developer_id": developer_id, "granularity": b.granularity, "bucket_start": b.bucket_start,
             **{name: getattr(b, name) for name in METRIC_NAMES}}
            for b in buckets
        ])
    return len(buckets)


def aggregate_batch(session: Session, batch: Batch, idle_timeout_seconds: int) -> dict[str, int]:
    if batch.first_ts is None:
        return {"buckets": 0}
    return {"buckets": aggregate_developer(session, batch.developer_id, batch.first_ts, idle_timeout_seconds)}


def metric_rows(
    session: Session, developer_id: str, granularity: str, start: datetime | None = None, end: datetime | None = None,
) -> list[DeveloperMetric]:
    stmt = select(DeveloperMetric).where(DeveloperMetric.developer_id == developer_id,
                                         DeveloperMetric.granularity == granularity)
    if start is not None:
        stmt = stmt.where(DeveloperMetric.bucket_start >= start)
    if end is not None:
        stmt = stmt.where(DeveloperMetric.bucket_start < end)
    return list(session.execute(stmt.order_by(DeveloperMetric.bucket_start)).scalars())
