"""Reading stored raw events as plain `activity.events.NormalizedEvent` values.

Every downstream job upcasts in memory with the same pure function, so the
three header jobs of the chord are independent of each other: aggregation and
danger detection never wait for the normalization job's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, func, or_, select
from sqlalchemy.orm import Session

from activity.events import NormalizedEvent
from activity.upcasting import upcast
from models.tables import RawEvent

# The event types whose earlier occurrences can shape debug time after them.
DEBUG_TYPES = ("debug.start", "debug.stop")

# Only what the rules read, with the payload cut out of the raw event in SQL: loading whole ORM rows
# (and parsing every raw event in full) was the workers' largest cost.
_COLUMNS = (RawEvent.event_id, RawEvent.type, RawEvent.schema_version, RawEvent.corrected_ts,
            RawEvent.client_utc_offset_minutes, RawEvent.session_id, RawEvent.raw["payload"].label("payload"))


def to_event(row: Row[Any]) -> NormalizedEvent:
    """The one conversion of a stored event (a row of `_COLUMNS`) into the rules' upcast value."""
    payload = row.payload if isinstance(row.payload, dict) else {}
    event_type, upcast_payload = upcast(row.type, row.schema_version, payload)
    return NormalizedEvent(event_id=str(row.event_id), type=event_type, ts=row.corrected_ts,
                           payload=upcast_payload, utc_offset_minutes=row.client_utc_offset_minutes,
                           session_id=row.session_id)


def _read(session: Session, stmt: Select[Any]) -> list[NormalizedEvent]:
    return [to_event(row) for row in session.execute(stmt)]


def batch_rows(session: Session, batch_id: uuid.UUID) -> list[Row[Any]]:
    """A batch's stored events in batch order, with what normalization stores beside the upcast event."""
    stmt = select(*_COLUMNS, RawEvent.batch_id, RawEvent.seq, RawEvent.developer_id)
    return list(session.execute(stmt.where(RawEvent.batch_id == batch_id).order_by(RawEvent.seq)))


def developer_events(
    session: Session, developer_id: str, *, since: datetime | None = None, until: datetime | None = None,
) -> list[NormalizedEvent]:
    stmt = select(*_COLUMNS).where(RawEvent.developer_id == developer_id)
    if since is not None:
        stmt = stmt.where(RawEvent.corrected_ts >= since)
    if until is not None:
        stmt = stmt.where(RawEvent.corrected_ts <= until)
    return _read(session, stmt.order_by(RawEvent.corrected_ts, RawEvent.event_id))


def debug_related_events(
    session: Session, developer_id: str, *, before: datetime | None = None
) -> list[NormalizedEvent]:
    """debug.start/stop and debugging heartbeats: the only events whose past reaches into later buckets."""
    stmt = select(*_COLUMNS).where(
        RawEvent.developer_id == developer_id,
        or_(RawEvent.type.in_(DEBUG_TYPES),
            (RawEvent.type == "editor.heartbeat") & (RawEvent.raw["payload"]["category"].astext == "debugging")),
    )
    if before is not None:
        stmt = stmt.where(RawEvent.corrected_ts < before)
    return _read(session, stmt)


def last_event_ts(session: Session, developer_id: str) -> datetime | None:
    return session.execute(
        select(func.max(RawEvent.corrected_ts)).where(RawEvent.developer_id == developer_id)
    ).scalar_one_or_none()


def merge_unique(*groups: Iterable[NormalizedEvent]) -> Sequence[NormalizedEvent]:
    seen: dict[str, NormalizedEvent] = {}
    for group in groups:
        for event in group:
            seen.setdefault(event.event_id, event)
    return list(seen.values())
