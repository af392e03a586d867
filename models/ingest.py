"""Writing one validated batch: batch row, raw events, audit records and outbox row in one transaction.

Exactly-once persistence rests on two unique keys, never on a cache:
`batches (developer_id, batch_id)` decides batch-level resends and
`raw_events (developer_id, event_id)` decides event-level duplicates, so
concurrent overlapping posts still store each event once. Both keys are per
developer: another developer's use of the same ids neither drops this
developer's events nor tells either of them that the ids exist.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg2.extras import Json
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.tracing import current_trace_id, current_traceparent
from models.db import dbapi_cursor
from models.outbox import PUBLISH_GRACE
from models.tables import Batch, RawEvent


@dataclass(frozen=True)
class PreparedEvent:
    """A validated event, ready to store."""

    event_id: uuid.UUID
    seq: int
    type: str
    schema_version: str
    session_id: str | None
    client_ts: datetime
    client_utc_offset_minutes: int
    corrected_ts: datetime
    raw: dict[str, Any]
    # `raw` as compact JSON text, when the caller has it already (ingest serializes each event once).
    raw_json: str | None = None
    # A type a newer 1.x minor added, unknown to the catalog: stored, skipped by the jobs until it is known.
    unprocessed: bool = False


@dataclass(frozen=True)
class Rejection:
    index: int
    event_id: str | None
    code: str
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "event_id": self.event_id, "code": self.code,
                "field": self.field, "message": self.message}


@dataclass(frozen=True)
class PreparedBatch:
    batch_id: uuid.UUID
    developer_id: str
    correlation_id: str
    content_hash: str
    received_at: datetime
    sent_at: datetime
    client: dict[str, Any]
    received: int
    events: list[PreparedEvent]
    rejections: list[Rejection]
    # event_ids repeated inside the batch itself (the first occurrence is kept).
    in_batch_duplicates: list[str] = field(default_factory=list)
    source: str = "native"
    # When validation ended (the `validated` audit record's time); None: the time of the persisting statement.
    validated_at: datetime | None = None
    # Events of a type the catalog does not know yet, under a newer 1.x minor: stored raw, not processed until
    # the catalog learns the type (activity/catalog.py `stored_unprocessed`).
    unprocessed_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StoredBatch:
    """The developer's batch already stored under this batch id, as a resend (or a conflicting send) finds it."""

    correlation_id: str
    received_at: datetime
    received: int
    accepted: int
    duplicates: int
    rejected: int
    # The first reply's status, errors, duplicate ids and stored_unprocessed; None for batches stored before 0011.
    first_reply: dict[str, Any] | None


@dataclass
class PersistOutcome:
    kind: str  # "stored" | "duplicate_batch" | "conflict" | "refused" (no valid event: nothing stored)
    batch: Batch | None = None
    accepted_ids: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    outbox_id: int | None = None
    # "duplicate_batch" and "conflict": the batch stored first under this id.
    original: StoredBatch | None = None
    # "stored": how many of the accepted events are stored unprocessed (unknown type under a newer minor).
    stored_unprocessed: int = 0


_INSERT_BATCH = """
INSERT INTO batches (batch_id, developer_id, correlation_id, content_hash, status, source, received_at, sent_at,
                     client, received, accepted, duplicates, rejected)
VALUES (%(batch_id)s::uuid, %(developer_id)s, %(correlation_id)s, %(content_hash)s, 'persisted', %(source)s,
        %(received_at)s, %(sent_at)s, %(client)s::jsonb, %(received)s, %(accepted)s, 0, %(rejected)s)
ON CONFLICT (developer_id, batch_id) DO NOTHING RETURNING 1
"""

# One array per column, unnested by PostgreSQL: psycopg2 adapts a list in C, where execute_values formats every
# row in Python (a fifth of the web's CPU for 100-event batches).
_INSERT_EVENTS = """
INSERT INTO raw_events (event_id, batch_id, developer_id, seq, type, schema_version, session_id, client_ts,
                        client_utc_offset_minutes, corrected_ts, received_at, raw)
SELECT e.event_id, %(batch_id)s::uuid, %(developer_id)s, e.seq, e.type, e.schema_version, e.session_id, e.client_ts,
       e.utc_offset, e.corrected_ts, %(received_at)s, e.raw
FROM unnest(%(event_ids)s::uuid[], %(seqs)s::int[], %(types)s::text[], %(versions)s::text[], %(sessions)s::text[],
            %(client_ts)s::timestamptz[], %(offsets)s::int[], %(corrected)s::timestamptz[], %(raws)s::jsonb[])
     AS e(event_id, seq, type, schema_version, session_id, client_ts, utc_offset, corrected_ts, raw)
ON CONFLICT (developer_id, event_id) DO NOTHING RETURNING event_id::text
"""

# The batch's final counts, its trail and (if anything new was stored) its outbox record, in one round trip.
_FINISH = """
WITH counted AS (
  UPDATE batches SET accepted = %(accepted)s, duplicates = %(duplicates)s, first_ts = %(first_ts)s,
                     last_ts = %(last_ts)s, status = %(status)s, first_reply = %(first_reply)s::jsonb
  WHERE developer_id = %(developer_id)s AND batch_id = %(batch_id)s::uuid
),
trail AS (
  INSERT INTO audit_log (correlation_id, batch_id, step, details, created_at)
  SELECT %(correlation_id)s, %(batch_id)s::uuid, r.step, r.details, coalesce(r.at, clock_timestamp())
  FROM ROWS FROM (jsonb_to_recordset(%(records)s::jsonb) AS (step text, details jsonb, at timestamptz))
       WITH ORDINALITY AS r(step, details, at, n)
  ORDER BY r.n
)
INSERT INTO outbox (developer_id, batch_id, correlation_id, next_attempt_at)
SELECT %(developer_id)s, %(batch_id)s::uuid, %(correlation_id)s, %(next_attempt_at)s WHERE %(publish)s
RETURNING id
"""

# The same with tracing on (core/tracing.py): each trail record names the trace, and the outbox record keeps the
# request's traceparent for its publish. A separate text so that with tracing off the statement is unchanged.
_FINISH_TRACED = (_FINISH
                  .replace("SELECT %(correlation_id)s, %(batch_id)s::uuid, r.step, r.details, ",
                           "SELECT %(correlation_id)s, %(batch_id)s::uuid, r.step,\n"
                           "         r.details || jsonb_build_object('trace_id', %(trace_id)s::text), ")
                  .replace("INSERT INTO outbox (developer_id, batch_id, correlation_id, next_attempt_at)\n"
                           "SELECT %(developer_id)s, %(batch_id)s::uuid, %(correlation_id)s, %(next_attempt_at)s ",
                           "INSERT INTO outbox (developer_id, batch_id, correlation_id, next_attempt_at, traceparent)\n"
                           "SELECT %(developer_id)s, %(batch_id)s::uuid, %(correlation_id)s, %(next_attempt_at)s, "
                           "%(traceparent)s "))
assert "%(trace_id)s" in _FINISH_TRACED and "%(traceparent)s" in _FINISH_TRACED

# The batch already stored under this id (a resend or a conflicting send), and the resend's audit record, in
# the round trip that used to load the batch alone. `same`: the content matches (a duplicate, else a conflict).
_STORED_COLUMNS = """correlation_id, received_at, received, accepted, duplicates, rejected, first_reply,
         content_hash = %(content_hash)s AS same"""
_RESEND_DETAILS = """jsonb_build_object('developer_id', %(developer_id)s, 'received', %(received)s,
         'original_correlation_id', s.correlation_id, 'original_received_at', s.received_at,
         'first_reply_replayed', s.same)"""
_RESEND = f"""
WITH stored AS (
  SELECT {_STORED_COLUMNS} FROM batches WHERE developer_id = %(developer_id)s AND batch_id = %(batch_id)s::uuid
), trail AS (
  INSERT INTO audit_log (correlation_id, batch_id, step, details)
  SELECT %(correlation_id)s, %(batch_id)s::uuid, CASE WHEN s.same THEN 'duplicate_batch' ELSE 'batch_conflict' END,
         {_RESEND_DETAILS}
  FROM stored s
)
SELECT * FROM stored
"""

# A batch with no valid event stores nothing: one statement writes its `refused` record (or, when the developer
# stored a batch of that id already, the resend's record as above) and returns that stored batch if any.
_REFUSE = f"""
WITH stored AS (
  SELECT {_STORED_COLUMNS} FROM batches WHERE developer_id = %(developer_id)s AND batch_id = %(batch_id)s::uuid
), trail AS (
  INSERT INTO audit_log (correlation_id, batch_id, step, details, created_at)
  SELECT %(correlation_id)s, %(batch_id)s::uuid,
         CASE WHEN s.same IS NULL THEN 'refused' WHEN s.same THEN 'duplicate_batch' ELSE 'batch_conflict' END,
         CASE WHEN s.same IS NULL THEN %(refusal)s::jsonb ELSE {_RESEND_DETAILS} END, clock_timestamp()
  FROM (SELECT 1) AS one LEFT JOIN stored s ON true
)
SELECT * FROM stored
"""

# A refused request stored nothing: its record's commit need not wait for the WAL to reach the disk (a crash of
# PostgreSQL within wal_writer_delay of it could lose the record, never stored data). Refusals come in floods
# (a client ignoring Retry-After), and each then costs one round trip without a flush.
_REFUSE_REQUEST = """
SET LOCAL synchronous_commit TO OFF;
INSERT INTO audit_log (correlation_id, batch_id, step, details) VALUES (%(correlation_id)s, %(batch_id)s, 'refused',
                                                                       %(details)s::jsonb)
"""

# A refusal record names at most this many rejected events (and counts them all).
MAX_LISTED_REJECTIONS = 100


def record_refusal(session: Session, *, correlation_id: str, batch_id: str | None, details: dict[str, Any]) -> None:
    """The `refused` audit record of a request refused as a whole before anything was stored (one INSERT)."""
    with dbapi_cursor(session) as cursor:
        cursor.execute(_REFUSE_REQUEST, {"correlation_id": correlation_id, "batch_id": batch_id,
                                         "details": json.dumps(details, default=str)})


def _stored(row: Any) -> tuple[str, StoredBatch]:
    correlation_id, received_at, received, accepted, duplicates, rejected, first_reply, same = row
    return ("duplicate_batch" if same else "conflict",
            StoredBatch(correlation_id=correlation_id, received_at=received_at, received=received, accepted=accepted,
                        duplicates=duplicates, rejected=rejected, first_reply=first_reply))


def _refuse(session: Session, prepared: PreparedBatch) -> PersistOutcome:
    rejections = prepared.rejections
    refusal = {"developer_id": prepared.developer_id, "status": 422, "code": "no_valid_events",
               "source": prepared.source, "received": prepared.received, "rejected": len(rejections),
               "rejections": [r.as_dict() for r in rejections[:MAX_LISTED_REJECTIONS]]}
    with dbapi_cursor(session) as cursor:
        cursor.execute(_REFUSE, {"developer_id": prepared.developer_id, "batch_id": str(prepared.batch_id),
                                 "correlation_id": prepared.correlation_id, "content_hash": prepared.content_hash,
                                 "received": prepared.received, "refusal": json.dumps(refusal)})
        row = cursor.fetchone()
    if row is None:
        return PersistOutcome(kind="refused")
    kind, original = _stored(row)
    return PersistOutcome(kind=kind, original=original)


def persist_batch(session: Session, prepared: PreparedBatch, *, with_batch: bool = True) -> PersistOutcome:
    """Store the batch inside the caller's transaction; the caller commits (or rolls back on 422).

    Three statements, as plain SQL on the driver (this is ingest's hot path: the ORM's statement building cost
    more than the statements): the batch row, the events, then counts + trail + outbox together.
    `with_batch`: also load the stored batch row into the outcome (the HTTP edge does not need it).
    """
    batch_id = str(prepared.batch_id)
    key = (prepared.developer_id, prepared.batch_id)
    if not prepared.events:
        outcome = _refuse(session, prepared)
        if with_batch and outcome.original is not None:
            outcome.batch = session.get(Batch, key)
        return outcome
    with dbapi_cursor(session) as cursor:
        cursor.execute(_INSERT_BATCH, {
            "batch_id": batch_id, "developer_id": prepared.developer_id, "correlation_id": prepared.correlation_id,
            "content_hash": prepared.content_hash, "source": prepared.source, "received_at": prepared.received_at,
            "sent_at": prepared.sent_at, "client": Json(prepared.client), "received": prepared.received,
            # Provisional split; corrected below once the event inserts tell what was new.
            "accepted": prepared.received - len(prepared.rejections), "rejected": len(prepared.rejections),
        })
        inserted = cursor.fetchone()
    if inserted is None:
        # A resend by the same developer (possibly concurrent: the unique index made us wait for the first commit,
        # and this next statement sees it).
        with dbapi_cursor(session) as cursor:
            cursor.execute(_RESEND, {"developer_id": prepared.developer_id, "batch_id": batch_id,
                                     "correlation_id": prepared.correlation_id, "content_hash": prepared.content_hash,
                                     "received": prepared.received})
            row = cursor.fetchone()
        assert row is not None
        kind, original = _stored(row)
        return PersistOutcome(kind=kind, original=original,
                              batch=session.get(Batch, key) if with_batch else None)

    accepted: list[str] = []
    # Each id as text once: the canonical text sorts as the UUID does (fixed-width lowercase hex).
    pairs = [(str(e.event_id), e) for e in prepared.events]
    keyed = sorted(pairs, key=lambda pair: pair[0])
    if keyed:
        # Ascending key order: concurrent overlapping batches then take the unique-index locks in one
        # global order and cannot deadlock (PostgreSQL would abort one of them). All events of a batch share
        # its developer, so ordering by event_id is ordering by the key (developer_id, event_id).
        ordered = [e for _, e in keyed]
        with dbapi_cursor(session) as cursor:
            cursor.execute(_INSERT_EVENTS, {
                "batch_id": batch_id, "developer_id": prepared.developer_id, "received_at": prepared.received_at,
                "event_ids": [text for text, _ in keyed], "seqs": [e.seq for e in ordered],
                "types": [e.type for e in ordered], "versions": [e.schema_version for e in ordered],
                "sessions": [e.session_id for e in ordered], "client_ts": [e.client_ts for e in ordered],
                "offsets": [e.client_utc_offset_minutes for e in ordered],
                "corrected": [e.corrected_ts for e in ordered],
                "raws": [e.raw_json if e.raw_json is not None else json.dumps(e.raw) for e in ordered],
            })
            accepted = [r[0] for r in cursor.fetchall()]
    accepted_set = set(accepted)
    earlier_duplicates = [text for text, _ in pairs if text not in accepted_set]  # in the batch's order
    duplicate_ids = earlier_duplicates + prepared.in_batch_duplicates
    stored_ts = [e.corrected_ts for text, e in pairs if text in accepted_set]

    originals = _original_batches(session, prepared.developer_id, earlier_duplicates) if earlier_duplicates else {}
    # Usually empty: only events of types a newer minor added are in it.
    unprocessed = sum(1 for i in prepared.unprocessed_ids if i in accepted_set)
    rejections = [r.as_dict() for r in prepared.rejections]
    first_reply = {"status": "partially_accepted" if rejections else "accepted", "errors": rejections,
                   "duplicate_event_ids": duplicate_ids, "stored_unprocessed": unprocessed}
    trace_id = current_trace_id()
    with dbapi_cursor(session) as cursor:
        cursor.execute(_FINISH if trace_id is None else _FINISH_TRACED, {
            "developer_id": prepared.developer_id, "batch_id": batch_id, "correlation_id": prepared.correlation_id,
            "accepted": len(accepted), "duplicates": len(duplicate_ids),
            "first_ts": min(stored_ts) if stored_ts else None, "last_ts": max(stored_ts) if stored_ts else None,
            # Nothing new to process: the batch is complete as it stands.
            "status": "persisted" if accepted else "processed",
            "records": Json(_trail(prepared, len(accepted), duplicate_ids, originals, rejections, unprocessed)),
            "first_reply": Json(first_reply),
            "publish": bool(accepted),
            # The web publishes it right after the response; the relay only takes it if that did not happen.
            "next_attempt_at": prepared.received_at + PUBLISH_GRACE,
            "trace_id": trace_id, "traceparent": current_traceparent() if trace_id is not None else None,
        })
        row = cursor.fetchone()
    outbox_id = int(row[0]) if row is not None else None
    return PersistOutcome(kind="stored", batch=session.get(Batch, key) if with_batch else None,
                          accepted_ids=accepted, duplicate_ids=duplicate_ids, outbox_id=outbox_id,
                          stored_unprocessed=unprocessed)


def _original_batches(session: Session, developer_id: str, event_ids: list[str]) -> dict[str, str]:
    """The developer's batch that stored each of these event ids first (never another developer's)."""
    rows = session.execute(
        select(RawEvent.event_id, RawEvent.batch_id)
        .where(RawEvent.developer_id == developer_id, RawEvent.event_id.in_([uuid.UUID(i) for i in event_ids]))
    )
    return {str(event_id): str(batch_id) for event_id, batch_id in rows}


def _trail(
    prepared: PreparedBatch,
    accepted: int,
    duplicate_ids: list[str],
    originals: dict[str, str],
    rejections: list[dict[str, Any]],
    unprocessed: int,
) -> list[dict[str, Any]]:
    """The batch's audit records at ingest, in order: received, validated, one per duplicate, persisted.

    Each at the time of its step: `received` the request's arrival, `validated` the end of validation, the rest
    the time of the statement that writes them (no "at": clock_timestamp()).
    """
    # Every record names the developer: a batch id is unique per developer only (see audit_chain.batch_trail).
    developer = {"developer_id": prepared.developer_id}
    received_at = prepared.received_at.isoformat()
    validated = {"valid": prepared.received - len(rejections), "rejected": len(rejections),
                 "rejections": rejections, **developer}
    if prepared.unprocessed_ids:
        validated["unknown_type_event_ids"] = prepared.unprocessed_ids[:MAX_LISTED_REJECTIONS]
    records: list[dict[str, Any]] = [
        {"step": "received", "at": received_at,
         "details": {"received": prepared.received, **developer, "source": prepared.source,
                     "received_at": received_at}},
        {"step": "validated", "at": prepared.validated_at.isoformat() if prepared.validated_at else None,
         "details": validated},
    ]
    batch_id = str(prepared.batch_id)
    for event_id in duplicate_ids:
        records.append({"step": "deduplicated",
                        "details": {"event_id": event_id, "original_batch_id": originals.get(event_id, batch_id),
                                    **developer}})
    persisted = {"accepted": accepted, "duplicates": len(duplicate_ids), **developer}
    if unprocessed:
        persisted["stored_unprocessed"] = unprocessed
    records.append({"step": "persisted", "details": persisted})
    return records
