"""Reading metrics: hours (UTC), the developer's local days and ISO weeks, summed from 15-minute slots."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from activity.metrics import SLOT_COLUMNS
from models.tables import ActivityBreakdown, MetricSlot

Granularity = Literal["hour", "day", "week"]
GRANULARITIES: tuple[Granularity, ...] = ("hour", "day", "week")

# The metric fields of a bucket, in the order the API lists them.
METRIC_NAMES: tuple[str, ...] = (
    "events", "active_seconds", "edits", "lines_added", "lines_deleted", "saves", "error_events", "builds",
    "build_failures", "tests_passed", "tests_failed", "debug_seconds", "typed_chars", "ai_chars_inserted",
    "ai_share", "commits",
)
_LONGEST_BUCKET = timedelta(days=8)  # a week, plus a day of zone offset either way


@dataclass(frozen=True)
class Bucket:
    bucket_start: datetime  # UTC instant of the bucket's start (local midnight for days and weeks)
    values: dict[str, int | float | None]


def _bucket_start(column: Any, granularity: Granularity, timezone: str) -> ColumnElement[Any]:
    zone = literal("UTC") if granularity == "hour" else literal(timezone)
    unit = {"hour": "hour", "day": "day", "week": "week"}[granularity]  # PostgreSQL weeks are ISO (Monday)
    return func.timezone(zone, func.date_trunc(unit, func.timezone(zone, column)))


def _values(sums: dict[str, int]) -> dict[str, int | float | None]:
    ai, typed = sums["ai_chars_inserted"], sums["typed_chars"]
    out: dict[str, int | float | None] = {}
    for name in METRIC_NAMES:
        if name == "active_seconds":
            out[name] = sums["active_us"] / 1e6
        elif name == "debug_seconds":
            out[name] = sums["debug_us"] / 1e6
        elif name == "ai_share":
            out[name] = ai / (ai + typed) if ai + typed else None
        else:
            out[name] = sums[name]
    return out


def metric_buckets(session: Session, developer_id: str, granularity: Granularity, *, timezone: str = "UTC",
                   start: datetime | None = None, end: datetime | None = None) -> list[Bucket]:
    """Buckets whose start lies in [start, end), oldest first; only buckets with any slot."""
    bucket = _bucket_start(MetricSlot.slot_start, granularity, timezone).label("bucket_start")
    stmt = select(bucket, *[func.sum(getattr(MetricSlot, c)).label(c) for c in SLOT_COLUMNS]).where(
        MetricSlot.developer_id == developer_id)
    if start is not None:
        stmt = stmt.where(MetricSlot.slot_start >= start - _LONGEST_BUCKET, bucket >= start)
    if end is not None:
        stmt = stmt.where(MetricSlot.slot_start < end + _LONGEST_BUCKET, bucket < end)
    rows = session.execute(stmt.group_by(bucket).order_by(bucket))
    return [Bucket(row.bucket_start, _values({c: int(getattr(row, c)) for c in SLOT_COLUMNS})) for row in rows]


def breakdown(session: Session, developer_id: str, dimension: str, *, timezone: str = "UTC",
              start: datetime | None = None, end: datetime | None = None) -> list[tuple[datetime, str, float]]:
    """(local day start, key, active seconds) per day and language or project, days oldest first."""
    day = _bucket_start(ActivityBreakdown.slot_start, "day", timezone).label("day")
    total = func.sum(ActivityBreakdown.active_us).label("active_us")
    stmt = select(day, ActivityBreakdown.key, total).where(ActivityBreakdown.developer_id == developer_id,
                                                           ActivityBreakdown.dimension == dimension)
    if start is not None:
        stmt = stmt.where(ActivityBreakdown.slot_start >= start - _LONGEST_BUCKET, day >= start)
    if end is not None:
        stmt = stmt.where(ActivityBreakdown.slot_start < end + _LONGEST_BUCKET, day < end)
    rows = session.execute(stmt.group_by(day, ActivityBreakdown.key).order_by(day, total.desc(),
                                                                             ActivityBreakdown.key))
    return [(row.day, row.key, int(row.active_us) / 1e6) for row in rows]
