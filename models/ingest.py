"""Writing one validated batch: batch row, raw events, audit records and outbox row in one transaction.

Exactly-once persistence rests on two unique keys, never on a cache:
`batches (developer_id, batch_id)` decides batch-level resends and
`raw_events (developer_id, event_id)` decides event-level duplicates, so
concurrent overlapping posts still store each event once. Both keys are per
developer: another developer's use of the same ids neither drops this
developer's events nor tells either of them that the ids exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg2.extras import Json, execute_values
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.outbox import PUBLISH_GRACE
from models.tables import AuditRecord, Batch, Outbox, RawEvent


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


@dataclass
class PersistOutcome:
    kind: str  # "stored" | "duplicate_batch" | "conflict"
    batch: Batch | None = None
    accepted_ids: list[str] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)
    outbox_id: int | None = None


def persist_batch(session: Session, prepared: PreparedBatch) -> PersistOutcome:
    """Store the batch inside the caller's transaction; the caller commits (or rolls back on 422)."""
    inserted = session.execute(
        insert(Batch)
        .values(
            batch_id=prepared.batch_id,
            developer_id=prepared.developer_id,
            correlation_id=prepared.correlation_id,
            content_hash=prepared.content_hash,
            status="persisted",
            source=prepared.source,
            received_at=prepared.received_at,
            sent_at=prepared.sent_at,
            client=prepared.client,
            received=prepared.received,
            # Provisional split; corrected below once the event inserts tell what was new.
            accepted=prepared.received - len(prepared.rejections),
            duplicates=0,
            rejected=len(prepared.rejections),
        )
        .on_conflict_do_nothing(index_elements=[Batch.developer_id, Batch.batch_id])
        .returning(Batch.batch_id)
    ).first()
    key = (prepared.developer_id, prepared.batch_id)
    if inserted is None:
        # A resend by the same developer (possibly concurrent: the unique index made us wait for the first commit).
        existing = session.get(Batch, key)
        assert existing is not None
        kind = "duplicate_batch" if existing.content_hash == prepared.content_hash else "conflict"
        return PersistOutcome(kind=kind, batch=existing)

    accepted: list[str] = []
    if prepared.events:
        # Ascending key order: concurrent overlapping batches then take the unique-index locks in one
        # global order and cannot deadlock (PostgreSQL would abort one of them). All events of a batch share
        # its developer, so ordering by event_id is ordering by the key (developer_id, event_id).
        ordered = sorted(prepared.events, key=lambda e: e.event_id)
        batch_id = str(prepared.batch_id)
        rows = [
            (str(e.event_id), batch_id, prepared.developer_id, e.seq, e.type, e.schema_version, e.session_id,
             e.client_ts, e.client_utc_offset_minutes, e.corrected_ts, prepared.received_at,
             e.raw_json if e.raw_json is not None else Json(e.raw))
            for e in ordered
        ]
        # The hot path of ingestion: one multi-row INSERT straight through the driver, which costs a
        # fraction of the ORM's per-row bulk machinery for the same statement.
        cursor = session.connection().connection.cursor()
        try:
            result = execute_values(
                cursor,
                "INSERT INTO raw_events (event_id, batch_id, developer_id, seq, type, schema_version, session_id,"
                " client_ts, client_utc_offset_minutes, corrected_ts, received_at, raw) VALUES %s"
                " ON CONFLICT (developer_id, event_id) DO NOTHING RETURNING event_id",
                rows, template="(%s::uuid, %s::uuid, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)",
                page_size=len(rows), fetch=True,
            )
        finally:
            cursor.close()
        accepted = [str(r[0]) for r in result]
    accepted_set = set(accepted)
    earlier_duplicates = [str(e.event_id) for e in prepared.events if str(e.event_id) not in accepted_set]
    duplicate_ids = earlier_duplicates + prepared.in_batch_duplicates
    stored_ts = [e.corrected_ts for e in prepared.events if str(e.event_id) in accepted_set]

    session.execute(
        update(Batch)
        .where(Batch.developer_id == prepared.developer_id, Batch.batch_id == prepared.batch_id)
        .values(
            accepted=len(accepted),
            duplicates=len(duplicate_ids),
            first_ts=min(stored_ts) if stored_ts else None,
            last_ts=max(stored_ts) if stored_ts else None,
            # Nothing new to process: the batch is complete as it stands.
            status="persisted" if accepted else "processed",
        )
    )

    originals = _original_batches(session, prepared.developer_id, earlier_duplicates) if earlier_duplicates else {}
    _write_audit(session, prepared, len(accepted), duplicate_ids, originals)

    outbox_id = None
    if accepted:
        outbox_id = session.execute(
            insert(Outbox)
            .values(developer_id=prepared.developer_id, batch_id=prepared.batch_id,
                    correlation_id=prepared.correlation_id,
                    # The web publishes it right after the response; the relay only takes it if that did not happen.
                    next_attempt_at=prepared.received_at + PUBLISH_GRACE)
            .returning(Outbox.id)
        ).scalar_one()
    batch = session.get(Batch, key)
    return PersistOutcome(kind="stored", batch=batch, accepted_ids=accepted, duplicate_ids=duplicate_ids,
                          outbox_id=outbox_id)


def _original_batches(session: Session, developer_id: str, event_ids: list[str]) -> dict[str, str]:
    """The developer's batch that stored each of these event ids first (never another developer's)."""
    rows = session.execute(
        select(RawEvent.event_id, RawEvent.batch_id)
        .where(RawEvent.developer_id == developer_id, RawEvent.event_id.in_([uuid.UUID(i) for i in event_ids]))
    )
    return {str(event_id): str(batch_id) for event_id, batch_id in rows}


def _write_audit(
    session: Session,
    prepared: PreparedBatch,
    accepted: int,
    duplicate_ids: list[str],
    originals: dict[str, str],
) -> None:
    base = {"correlation_id": prepared.correlation_id, "batch_id": prepared.batch_id}
    # Every record names the developer: a batch id is unique per developer only (see audit_chain.batch_trail).
    developer = {"developer_id": prepared.developer_id}
    records: list[dict[str, Any]] = [
        {**base, "step": "received",
         "details": {"received": prepared.received, **developer,
                     "source": prepared.source, "received_at": prepared.received_at.isoformat()}},
        {**base, "step": "validated",
         "details": {"valid": prepared.received - len(prepared.rejections), "rejected": len(prepared.rejections),
                     "rejections": [r.as_dict() for r in prepared.rejections], **developer}},
    ]
    batch_id = str(prepared.batch_id)
    for event_id in duplicate_ids:
        records.append({**base, "step": "deduplicated",
                        "details": {"event_id": event_id, "original_batch_id": originals.get(event_id, batch_id),
                                    **developer}})
    records.append({**base, "step": "persisted",
                    "details": {"accepted": accepted, "duplicates": len(duplicate_ids), **developer}})
    session.execute(insert(AuditRecord), records)
