"""Reading a developer's stored events for export: a server-side cursor, chunk by chunk, on one snapshot.

An export may run for minutes and cover millions of events: a named (server-side) cursor keeps only one chunk in
the process at a time, and a REPEATABLE READ, READ ONLY transaction gives the whole download one consistent
snapshot (an event stored meanwhile is either entirely in or entirely out). The order is the pipeline's own:
corrected time, then the batch's arrival, then the position in the batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from models.db import Database

# The typed columns of an exported event, in the order the CSV and Parquet formats write them; `event` is the
# stored event exactly as the client sent it (JSON text).
EVENT_COLUMNS = ("event_id", "type", "timestamp", "utc_offset_minutes", "corrected_timestamp", "received_at",
                 "batch_id", "seq", "schema_version", "session_id", "event")

_TYPED_SELECT = ("SELECT r.event_id::text, r.type, r.client_ts, r.client_utc_offset_minutes, r.corrected_ts,"
                 " r.received_at, r.batch_id::text, r.seq, r.schema_version, r.session_id, r.raw::text")
# NDJSON: the original event with the stored facts beside its own fields, built by PostgreSQL (no JSON parsing in
# Python). The stored facts win over an extra field of the same name the client may have sent.
_NDJSON_SELECT = ("SELECT (r.raw || jsonb_build_object('corrected_timestamp', r.corrected_ts, 'received_at',"
                  " r.received_at, 'batch_id', r.batch_id, 'seq', r.seq, 'schema_version', r.schema_version))::text")
_ORDER = " ORDER BY r.corrected_ts, r.received_at, r.batch_id, r.seq"


def _where(developer_id: str, start: datetime | None, end: datetime | None) -> tuple[str, dict[str, Any]]:
    sql = " FROM raw_events r WHERE r.developer_id = %(developer)s"
    params: dict[str, Any] = {"developer": developer_id}
    if start is not None:
        sql += " AND r.corrected_ts >= %(start)s"
        params["start"] = start
    if end is not None:
        sql += " AND r.corrected_ts < %(end)s"
        params["end"] = end
    return sql, params


def _chunks(db: Database, sql: str, params: dict[str, Any], chunk: int) -> Iterator[list[tuple[Any, ...]]]:
    with db.engine.connect() as conn:
        dbapi: Any = conn.connection.dbapi_connection
        with dbapi.cursor() as setup:
            # Both apply to this transaction only: the pooled connection goes back as it came.
            setup.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL TIME ZONE 'UTC'")
        cursor = dbapi.cursor(name=f"export_{uuid.uuid4().hex}")
        try:
            cursor.itersize = chunk
            cursor.execute(sql, params)
            while rows := cursor.fetchmany(chunk):
                yield rows
        finally:
            cursor.close()
            dbapi.rollback()


def event_rows(db: Database, developer_id: str, *, start: datetime | None = None, end: datetime | None = None,
               chunk: int = 5000) -> Iterator[list[tuple[Any, ...]]]:
    """Chunks of rows of `EVENT_COLUMNS`, corrected time in [start, end)."""
    where, params = _where(developer_id, start, end)
    return _chunks(db, _TYPED_SELECT + where + _ORDER, params, chunk)


def event_json_lines(db: Database, developer_id: str, *, start: datetime | None = None,
                     end: datetime | None = None, chunk: int = 5000) -> Iterator[list[str]]:
    """Chunks of exported events as JSON text (one object per event), corrected time in [start, end)."""
    where, params = _where(developer_id, start, end)
    for rows in _chunks(db, _NDJSON_SELECT + where + _ORDER, params, chunk):
        yield [row[0] for row in rows]


def count_events(db: Database, developer_id: str, *, start: datetime | None = None,
                 end: datetime | None = None) -> int:
    """How many events an export of this range holds (for the CLI's progress bar)."""
    where, params = _where(developer_id, start, end)
    with db.engine.connect() as conn:
        dbapi: Any = conn.connection.dbapi_connection
        with dbapi.cursor() as cursor:
            cursor.execute("SELECT count(*)" + where, params)
            (count,) = cursor.fetchone()
        dbapi.rollback()
    return int(count)
