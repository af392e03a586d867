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

from sqlalchemy import Row, select, tuple_
from sqlalchemy.orm import Session

from activity.catalog import KNOWN_EVENT_TYPES
from activity.events import NormalizedEvent
from activity.upcasting import upcast
from models.db import run_sql
from models.quarantine import processable
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


# The hot reads of the header jobs run as plain SQL on the session's DBAPI cursor: building ORM rows and
# converting UUIDs cost three times the query itself (bench/jobs.py). Same columns as `_COLUMNS`, in order.
_LEAN_SELECT = ("SELECT r.event_id::text, r.type, r.schema_version, r.corrected_ts, r.client_utc_offset_minutes,"
                " r.session_id, r.received_at, r.seq, {payload}, r.raw->>'project'{extra} FROM raw_events r")
# Types the catalog knows, as SQL: events of other types (stored under a newer minor, `stored_unprocessed` in
# activity/catalog.py) are skipped by every job until the catalog learns them; a replay then processes them.
KNOWN_TYPE = " AND r.type IN ({})".format(", ".join(f"'{t}'" for t in sorted(KNOWN_EVENT_TYPES)))
# What a job reads of raw events: of a known type, and not quarantined for the job.
PROCESSABLE = KNOWN_TYPE + (" AND NOT EXISTS (SELECT 1 FROM quarantined_events q"
                            " WHERE q.developer_id = r.developer_id AND q.event_id = r.event_id AND q.job = %(job)s"
                            " AND q.released_at IS NULL)")


def lean_event(r: tuple[Any, ...]) -> NormalizedEvent:
    """`to_event` for a row of `_LEAN_SELECT`."""
    payload = r[8]
    if payload is None:
        event_type, upcast_payload = r[1], dict[str, Any]()
    else:
        event_type, upcast_payload = upcast(r[1], r[2], payload if isinstance(payload, dict) else {})
    return NormalizedEvent(r[0], event_type, r[3], upcast_payload, r[4], r[5], r[6], r[7], r[9])


def batch_rows(session: Session, batch_id: uuid.UUID, *, developer_id: str, job: str) -> list[tuple[Any, ...]]:
    """One developer's batch's stored events in batch order: rows of `_LEAN_SELECT` (read with `lean_event`)
    with the batch id appended (a batch id is unique per developer only: another developer's batch may
    carry the same id)."""
    sql = (_LEAN_SELECT.format(payload="r.raw->'payload'", extra="")
           + " WHERE r.developer_id = %(developer)s AND r.batch_id = %(batch)s" + PROCESSABLE
           + " ORDER BY r.seq")
    return run_sql(session, sql, {"developer": developer_id, "batch": str(batch_id), "job": job})


def developer_events(
    session: Session, developer_id: str, *, since: datetime | None = None, until: datetime | None = None,
    job: str | None = None, payload_types: frozenset[str] | None = None, types: frozenset[str] | None = None,
) -> list[NormalizedEvent]:
    """The developer's stored events in [since, until], skipping those quarantined for `job` (if given);
    with `types`, only events of those (stored, not upcast) types.

    With `payload_types`, only events of those types carry their payload (the others an empty one): parsing
    payloads nobody reads was most of a wide window's cost.
    """
    params: dict[str, Any] = {"developer": developer_id, "job": job, "since": since, "until": until}
    payload = "r.raw->'payload'"
    if payload_types is not None:
        payload = "CASE WHEN r.type = ANY(%(types)s) THEN r.raw->'payload' END"
        params["types"] = sorted(payload_types)
    sql = _LEAN_SELECT.format(payload=payload, extra="") + " WHERE r.developer_id = %(developer)s"
    if types is not None:
        sql += " AND r.type = ANY(%(only)s)"
        params["only"] = sorted(types)
    sql += PROCESSABLE if job is not None else KNOWN_TYPE
    if since is not None:
        sql += " AND r.corrected_ts >= %(since)s"
    if until is not None:
        sql += " AND r.corrected_ts <= %(until)s"
    sql += " ORDER BY r.corrected_ts, r.event_id"
    return [lean_event(r) for r in run_sql(session, sql, params)]


def debug_marks(session: Session, developer_id: str, since: datetime, until: datetime, *, job: str
                ) -> tuple[dict[str, datetime], dict[str, list[datetime]]]:
    """The developer's debug sessions seen in [since, until] (ix_raw_events_debug_marks): the earliest
    debug.start of each session id, and the times of its debug.stop events."""
    sid = RawEvent.raw["payload"]["debug_session_id"].astext
    stmt = select(RawEvent.type, RawEvent.corrected_ts, sid).where(
        RawEvent.developer_id == developer_id, RawEvent.type.in_(("debug.start", "debug.stop")),
        RawEvent.corrected_ts >= since, RawEvent.corrected_ts <= until, processable(job))
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
