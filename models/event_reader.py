"""Reading stored raw events as plain `activity.events.NormalizedEvent` values.

Every downstream job upcasts in memory with the same pure function, so the
three header jobs of the chord are independent of each other: aggregation and
danger detection never wait for the normalization job's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, case, select, tuple_
from sqlalchemy.orm import Session

from activity.events import NormalizedEvent
from activity.upcasting import upcast
from models.quarantine import not_quarantined
from models.tables import RawEvent

# Only what the rules read, with the payload cut out of the raw event in SQL: loading whole ORM rows
# (and parsing every raw event in full) was the workers' largest cost.
_COLUMNS = (RawEvent.event_id, RawEvent.type, RawEvent.schema_version, RawEvent.corrected_ts,
            RawEvent.client_utc_offset_minutes, RawEvent.session_id, RawEvent.received_at, RawEvent.seq,
            RawEvent.raw["payload"].label("payload"), RawEvent.raw["project"].astext.label("project"))


def to_event(row: Row[Any]) -> NormalizedEvent:
    """The one conversion of a stored event (a row of `_COLUMNS`) into the rules' upcast value."""
    if row.payload is None:
        # A reader that left this type's payload out (`payload_types`): nothing to upcast either (only payloads
        # and 1.0's ai.completion, whose payload is always read, change in upcasting).
        event_type, upcast_payload = row.type, dict[str, Any]()
    else:
        payload = row.payload if isinstance(row.payload, dict) else {}
        event_type, upcast_payload = upcast(row.type, row.schema_version, payload)
    return NormalizedEvent(event_id=str(row.event_id), type=event_type, ts=row.corrected_ts,
                           payload=upcast_payload, utc_offset_minutes=row.client_utc_offset_minutes,
                           session_id=row.session_id, received_at=row.received_at, seq=row.seq,
                           project=row.project)


def _read(session: Session, stmt: Select[Any]) -> list[NormalizedEvent]:
    return [to_event(row) for row in session.execute(stmt)]


def batch_rows(session: Session, batch_id: uuid.UUID, *, developer_id: str, job: str) -> list[Row[Any]]:
    """One developer's batch's stored events in batch order, with what normalization stores beside the upcast
    event (a batch id is unique per developer only: another developer's batch may carry the same id)."""
    stmt = select(*_COLUMNS, RawEvent.batch_id, RawEvent.developer_id).where(
        RawEvent.developer_id == developer_id, RawEvent.batch_id == batch_id, not_quarantined(job))
    return list(session.execute(stmt.order_by(RawEvent.seq)))


def developer_events(
    session: Session, developer_id: str, *, since: datetime | None = None, until: datetime | None = None,
    job: str | None = None, payload_types: frozenset[str] | None = None,
) -> list[NormalizedEvent]:
    """The developer's stored events in [since, until], skipping those quarantined for `job` (if given).

    With `payload_types`, only events of those types carry their payload (the others an empty one): parsing
    payloads nobody reads was most of a wide window's cost.
    """
    columns: tuple[Any, ...] = _COLUMNS
    if payload_types is not None:
        payload = case((RawEvent.type.in_(sorted(payload_types)), RawEvent.raw["payload"])).label("payload")
        columns = tuple(payload if c.key == "payload" else c for c in _COLUMNS)
    stmt = select(*columns).where(RawEvent.developer_id == developer_id)
    if job is not None:
        stmt = stmt.where(not_quarantined(job))
    if since is not None:
        stmt = stmt.where(RawEvent.corrected_ts >= since)
    if until is not None:
        stmt = stmt.where(RawEvent.corrected_ts <= until)
    return _read(session, stmt.order_by(RawEvent.corrected_ts, RawEvent.event_id))


def debug_marks(session: Session, developer_id: str, since: datetime, until: datetime, *, job: str
                ) -> tuple[dict[str, datetime], dict[str, list[datetime]]]:
    """The developer's debug sessions seen in [since, until] (ix_raw_events_debug_marks): the earliest
    debug.start of each session id, and the times of its debug.stop events."""
    sid = RawEvent.raw["payload"]["debug_session_id"].astext
    stmt = select(RawEvent.type, RawEvent.corrected_ts, sid).where(
        RawEvent.developer_id == developer_id, RawEvent.type.in_(("debug.start", "debug.stop")),
        RawEvent.corrected_ts >= since, RawEvent.corrected_ts <= until, not_quarantined(job))
    starts: dict[str, datetime] = {}
    stops: dict[str, list[datetime]] = {}
    for row in session.execute(stmt.order_by(RawEvent.corrected_ts)):
        type_, ts, session_id = str(row[0]), row[1], row[2]
        if not isinstance(session_id, str) or not session_id or not isinstance(ts, datetime):
            continue
        if type_ == "debug.start":
            starts.setdefault(session_id, ts)
        else:
            stops.setdefault(session_id, []).append(ts)
    return starts, stops


def sessions_started_before(session: Session, developer_id: str, session_ids: Iterable[str],
                            before: datetime) -> frozenset[str]:
    """Which of these debug session ids already had a debug.start before `before`."""
    ids = sorted(set(session_ids))
    if not ids:
        return frozenset()
    sid = RawEvent.raw["payload"]["debug_session_id"].astext
    stmt = select(sid).distinct().where(RawEvent.developer_id == developer_id, RawEvent.type == "debug.start",
                                        RawEvent.corrected_ts < before, sid.in_(ids))
    return frozenset(session.execute(stmt).scalars())


def stored_event_rows(session: Session, *, developer_id: str, batch_id: uuid.UUID | None = None,
                      since: datetime | None = None, until: datetime | None = None,
                      after: tuple[Any, ...] | None = None, limit: int = 100) -> list[Row[Any]]:
    """Stored events as clients sent them (raw), in batch order for a batch, else in time order; keyset-paginated
    by `after` (the last row's (seq,) for a batch, (corrected_ts, received_at, seq, event_id) otherwise)."""
    # The rows carry `_COLUMNS` too, so `to_event` turns them into the rules' values (the alert's events).
    stmt = select(*_COLUMNS, RawEvent.batch_id, RawEvent.raw).where(RawEvent.developer_id == developer_id)
    if batch_id is not None:
        stmt = stmt.where(RawEvent.batch_id == batch_id)
        if after is not None:
            stmt = stmt.where(RawEvent.seq > after[0])
        stmt = stmt.order_by(RawEvent.seq)
    else:
        order = (RawEvent.corrected_ts, RawEvent.received_at, RawEvent.seq, RawEvent.event_id)
        if since is not None:
            stmt = stmt.where(RawEvent.corrected_ts >= since)
        if until is not None:
            stmt = stmt.where(RawEvent.corrected_ts <= until)
        if after is not None:
            stmt = stmt.where(tuple_(*order) > tuple_(*after))
        stmt = stmt.order_by(*order)
    return list(session.execute(stmt.limit(limit)))
