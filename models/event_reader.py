"""Reading stored raw events as plain `activity.events.NormalizedEvent` values.

Every downstream job upcasts in memory with the same pure function, so the
three header jobs of the chord are independent of each other: aggregation and
danger detection never wait for the normalization job's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from activity.events import NormalizedEvent
from activity.upcasting import upcast
from models.tables import RawEvent

# The event types whose earlier occurrences can shape debug time after them.
DEBUG_TYPES = ("debug.start", "debug.stop")


def to_normalized(row: RawEvent) -> NormalizedEvent:
    payload = row.raw.get("payload") if isinstance(row.raw, dict) else None
    event_type, upcast_payload = upcast(row.type, row.schema_version, payload if isinstance(payload, dict) else {})
    return NormalizedEvent(
        event_id=str(row.event_id),
        type=event_type,
        ts=row.corrected_ts,
        payload=upcast_payload,
        utc_offset_minutes=row.client_utc_offset_minutes,
        session_id=row.session_id,
    )


# Only what the rules read, with the payload cut out of the raw event in SQL: loading whole ORM rows
# (and parsing every raw event in full) was the workers' largest cost.
_COLUMNS = (RawEvent.event_id, RawEvent.type, RawEvent.schema_version, RawEvent.corrected_ts,
            RawEvent.client_utc_offset_minutes, RawEvent.session_id, RawEvent.raw["payload"].label("payload"))


def _select() -> Select:  # type: ignore[type-arg]
    return select(*_COLUMNS)


def _read(session: Session, stmt: Select) -> list[NormalizedEvent]:  # type: ignore[type-arg]
    out = []
    for row in session.execute(stmt):
        payload = row.payload if isinstance(row.payload, dict) else {}
        event_type, upcast_payload = upcast(row.type, row.schema_version, payload)
        out.append(NormalizedEvent(event_id=str(row.event_id), type=event_type, ts=row.corrected_ts,
                                   payload=upcast_payload, utc_offset_minutes=row.client_utc_offset_minutes,
                                   session_id=row.session_id))
    return out


def batch_events(session: Session, batch_id: uuid.UUID) -> list[RawEvent]:
    return list(session.execute(select(RawEvent).where(RawEvent.batch_id == batch_id).order_by(RawEvent.seq)).scalars())


def developer_events(
    session: Session, developer_id: str, *, since: datetime | None = None, until: datetime | None = None,
) -> list[NormalizedEvent]:
    stmt = _select().where(RawEvent.developer_id == developer_id)
    if since is not None:
        stmt = stmt.where(RawEvent.corrected_ts >= since)
    if until is not None:
        stmt = stmt.where(RawEvent.corrected_ts <= until)
    return _read(session, stmt.order_by(RawEvent.corrected_ts, RawEvent.event_id))


def debug_related_events(
    session: Session, developer_id: str, *, before: datetime | None = None
) -> list[NormalizedEvent]:
    """debug.start/stop and debugging heartbeats: the only events whose past reaches into later buckets."""
    stmt = _select().where(
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
