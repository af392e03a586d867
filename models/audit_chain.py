"""The audit trail's hash chain: sealing (a periodic task), verification and a batch's trail.

The scheme
----------
A record's *content* is the canonical JSON (keys sorted, no whitespace, UTF-8) of

    {"id", "created_at" (UTC, ISO 8601 with microseconds), "correlation_id",
     "batch_id" (string or null), "step", "is_replay", "details"}

and sealing record number n (in seal order) stores

    seal_seq     = n                               1, 2, 3, ... with no gap
    content_hash = sha256(content_n)               hex
    prev_hash    = chain_{n-1}                     chain_0 = GENESIS (64 zeros)

where the chain hash of a sealed record is

    chain_n = sha256(prev_hash_n || content_hash_n)   (the two hex strings concatenated)

chain_n is not stored: it is recomputed from record n and is what record n+1 stores as
prev_hash. `verify_chain` walks seal_seq in order and reports the first broken link:

- a gap in seal_seq: a sealed record was deleted;
- content_hash differs from the recomputed one: the record was edited;
- prev_hash differs from the recomputed chain: records were reordered (or one inserted,
  or the chain rewritten from there on).

Editing, deleting or reordering is only possible for someone who disables the
append-only trigger. Such a person could also recompute the whole chain (it has no
secret), and could drop records from the tail: `verify` prints the head (last seal_seq
and chain hash) so an operator can keep it elsewhere and compare later.

Concurrency
-----------
Writers take no lock: they insert unsealed rows. Only the sealer takes
pg_advisory_xact_lock(SEAL_LOCK_KEY), so there is one sealer at a time and seal_seq has
no gap (its UNIQUE constraint backs this up).

Each run seals unsealed rows (seal_seq IS NULL, never "id > the last sealed id", so no row
can be skipped for good) in id order, and stops at the first row whose created_at is not
older than a grace period. created_at is the time of the record's step: the inserting
statement's clock_timestamp(), or (ingest's `received` and `validated`) a moment of the same
request shortly before its transaction; ids are taken during that transaction. With the
grace G, if every writer's step time precedes its commit by less than G/2, all rows with a
lower id than a sealed one were committed (and sealed) first, so seal order equals id order.
With the default of 10 s that covers every ordinary transaction (ingest, a job's
bookkeeping, a publish with its broker timeouts). A longer transaction that commits a lower
id after a higher one was sealed is not lost: the next run seals it with the next seal_seq.
The chain order is seal_seq; id order is the usual case, not a guarantee, and `verify` only
counts such records.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, and_, func, or_, select, text
from sqlalchemy.orm import Session

from models.db import Database
from models.tables import AuditRecord, Batch

GENESIS = "0" * 64
# pg_advisory_xact_lock key of the sealer ("devpulse audit seal", an arbitrary constant).
SEAL_LOCK_KEY = 0x64_70_61_75_64_69_74  # "dpaudit"
DEFAULT_GRACE_SECONDS = 10.0
DEFAULT_SEAL_LIMIT = 5000

_CONTENT_COLUMNS = (AuditRecord.id, AuditRecord.created_at, AuditRecord.correlation_id, AuditRecord.batch_id,
                    AuditRecord.step, AuditRecord.is_replay, AuditRecord.details)
_SEAL_COLUMNS = (AuditRecord.seal_seq, AuditRecord.content_hash, AuditRecord.prev_hash, AuditRecord.sealed_at)


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()


def canonical_content(record: Any) -> bytes:
    """The bytes that content_hash covers (record: an AuditRecord or a row with its columns)."""
    content = {
        "id": record.id,
        "created_at": _utc_iso(record.created_at),
        "correlation_id": record.correlation_id,
        "batch_id": str(record.batch_id) if record.batch_id is not None else None,
        "step": record.step,
        "is_replay": bool(record.is_replay),
        "details": record.details,
    }
    return json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def content_hash(record: Any) -> str:
    return hashlib.sha256(canonical_content(record)).hexdigest()


def chain_hash(prev_hash: str, content: str) -> str:
    return hashlib.sha256((prev_hash + content).encode("ascii")).hexdigest()


# --- sealing ------------------------------------------------------------------------------------------------


@dataclass
class SealResult:
    sealed: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    # True when another sealer held the lock and this run did not wait for it.
    busy: bool = False
    # The chain hash of the last sealed record after this run (None: nothing sealed ever).
    head: str | None = None


def _head(session: Session) -> tuple[int, str]:
    row = session.execute(
        select(AuditRecord.seal_seq, AuditRecord.prev_hash, AuditRecord.content_hash)
        .where(AuditRecord.seal_seq.is_not(None))
        .order_by(AuditRecord.seal_seq.desc())
        .limit(1)
    ).first()
    if row is None:
        return 0, GENESIS
    return row.seal_seq, chain_hash(row.prev_hash, row.content_hash)


def seal_once(session: Session, *, grace_seconds: float = DEFAULT_GRACE_SECONDS, limit: int = DEFAULT_SEAL_LIMIT,
              wait: bool = True) -> SealResult:
    """Seal up to `limit` records in the caller's transaction (see the module docstring)."""
    if wait:
        session.execute(select(func.pg_advisory_xact_lock(SEAL_LOCK_KEY)))
    elif not session.execute(select(func.pg_try_advisory_xact_lock(SEAL_LOCK_KEY))).scalar_one():
        return SealResult(busy=True)
    # Read after taking the lock: a sealer that held it has committed, this statement sees its work.
    seq, chain = _head(session)
    cutoff = session.execute(select(func.now())).scalar_one() - timedelta(seconds=grace_seconds)
    rows = session.execute(
        select(*_CONTENT_COLUMNS).where(AuditRecord.seal_seq.is_(None)).order_by(AuditRecord.id).limit(limit)
    ).all()
    result = SealResult(head=chain if seq else None)
    ids: list[int] = []
    seqs: list[int] = []
    contents: list[str] = []
    prevs: list[str] = []
    for row in rows:
        if row.created_at >= cutoff:
            break  # too young: a lower id may still be in flight; later rows wait for the next run
        seq += 1
        content = content_hash(row)
        ids.append(row.id)
        seqs.append(seq)
        contents.append(content)
        prevs.append(chain)
        chain = chain_hash(chain, content)
    if not ids:
        return result
    updated: CursorResult[Any] = session.execute(  # type: ignore[assignment]  # an UPDATE has a rowcount
        text("""
            UPDATE audit_log AS a
               SET seal_seq = v.seq, content_hash = v.content_hash, prev_hash = v.prev_hash, sealed_at = now()
              FROM unnest(CAST(:ids AS bigint[]), CAST(:seqs AS bigint[]), CAST(:contents AS text[]),
                          CAST(:prevs AS text[])) AS v(id, seq, content_hash, prev_hash)
             WHERE a.id = v.id AND a.seal_seq IS NULL
        """),
        {"ids": ids, "seqs": seqs, "contents": contents, "prevs": prevs},
    )
    if updated.rowcount != len(ids):  # only possible if something sealed without the lock: roll back
        raise RuntimeError(f"sealed {updated.rowcount} of {len(ids)} records; another writer sealed concurrently")
    return SealResult(sealed=len(ids), first_seq=seqs[0], last_seq=seqs[-1], head=chain)


def seal_pending(db: Database, *, grace_seconds: float = DEFAULT_GRACE_SECONDS, limit: int = DEFAULT_SEAL_LIMIT,
                 wait: bool = True, max_rounds: int = 20) -> SealResult:
    """Seal everything that is due, `limit` records per transaction."""
    total = SealResult()
    for _ in range(max_rounds):
        with db.transaction() as session:
            step = seal_once(session, grace_seconds=grace_seconds, limit=limit, wait=wait)
        if step.busy:
            total.busy = True
            break
        total.head = step.head or total.head
        if step.sealed:
            total.sealed += step.sealed
            total.first_seq = total.first_seq or step.first_seq
            total.last_seq = step.last_seq
        if step.sealed < limit:
            break
    return total


# --- verification -------------------------------------------------------------------------------------------


@dataclass
class BrokenLink:
    seal_seq: int
    # The record found at (or, for a gap, right after) that position; None if the gap is at the end.
    id: int | None
    problem: str  # "gap" | "edited" | "reordered" | "incomplete"
    message: str


@dataclass
class VerifyResult:
    checked: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: str | None = None
    unsealed: int = 0
    oldest_unsealed: datetime | None = None
    # Sealed after a record with a higher id (a long transaction committed late): legitimate, counted only.
    out_of_id_order: int = 0
    broken: BrokenLink | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.broken is None


def _sealed_rows(session: Session, start_seq: int, chunk: int) -> Iterator[Any]:
    after = start_seq - 1
    while True:
        rows = session.execute(
            select(*_CONTENT_COLUMNS, *_SEAL_COLUMNS)
            .where(AuditRecord.seal_seq > after)
            .order_by(AuditRecord.seal_seq)
            .limit(chunk)
        ).all()
        yield from rows
        if len(rows) < chunk:
            return
        after = rows[-1].seal_seq


def verify_chain(session: Session, *, since: datetime | None = None, chunk: int = 2000) -> VerifyResult:
    """Walk the sealed records in seal_seq order and report the first broken link.

    With `since`, the walk starts at the lowest seal_seq among records created at or after
    it, anchored on the stored hashes of the record just before.
    """
    result = VerifyResult()
    unsealed = session.execute(
        select(func.count(), func.min(AuditRecord.created_at)).where(AuditRecord.seal_seq.is_(None))
    ).one()
    result.unsealed, result.oldest_unsealed = unsealed[0], unsealed[1]

    start = 1
    if since is not None:
        first: int | None = session.execute(
            select(func.min(AuditRecord.seal_seq)).where(AuditRecord.seal_seq.is_not(None),
                                                         AuditRecord.created_at >= since)
        ).scalar_one()
        if first is None:
            return result
        start = first
    expected_prev = GENESIS
    last_id: int | None = None
    if start > 1:
        anchor = session.execute(
            select(AuditRecord.id, AuditRecord.prev_hash, AuditRecord.content_hash)
            .where(AuditRecord.seal_seq == start - 1)
        ).first()
        if anchor is None:
            nxt = session.execute(select(AuditRecord.id).where(AuditRecord.seal_seq == start)).scalar_one()
            result.broken = BrokenLink(start - 1, nxt, "gap",
                                       f"seal_seq {start - 1} is missing (deleted record) before id {nxt}")
            return result
        expected_prev = chain_hash(anchor.prev_hash, anchor.content_hash)
        last_id = anchor.id

    seq = start
    for row in _sealed_rows(session, start, chunk):
        if row.seal_seq != seq:
            missing = f"seal_seq {seq}" if row.seal_seq == seq + 1 else f"seal_seq {seq}..{row.seal_seq - 1}"
            result.broken = BrokenLink(seq, row.id, "gap",
                                       f"{missing} missing (deleted record); the chain resumes at seal_seq "
                                       f"{row.seal_seq}, id {row.id}")
            return result
        if row.content_hash is None or row.prev_hash is None:
            result.broken = BrokenLink(seq, row.id, "incomplete", f"seal_seq {seq} (id {row.id}) has no hash")
            return result
        actual = content_hash(row)
        if actual != row.content_hash:
            result.broken = BrokenLink(seq, row.id, "edited",
                                       f"seal_seq {seq} (id {row.id}, step {row.step!r}): content changed after "
                                       f"sealing (stored hash {row.content_hash[:12]}, recomputed {actual[:12]})")
            return result
        if row.prev_hash != expected_prev:
            result.broken = BrokenLink(seq, row.id, "reordered",
                                       f"seal_seq {seq} (id {row.id}): prev_hash does not match the chain of "
                                       f"seal_seq {seq - 1} (records reordered, inserted or re-chained)")
            return result
        if last_id is not None and row.id < last_id:
            result.out_of_id_order += 1
        last_id = row.id
        expected_prev = chain_hash(row.prev_hash, actual)
        result.first_seq = result.first_seq or seq
        result.last_seq = seq
        result.checked += 1
        seq += 1
    result.head = expected_prev if result.checked else None
    return result


# --- a batch's trail ----------------------------------------------------------------------------------------


def batch_trail(session: Session, developer_id: str, batch_id: uuid.UUID | str) -> list[dict[str, Any]] | None:
    """Every audit record of one developer's batch in the order written (id), or None if the batch is unknown.

    A batch id is unique per developer only, and audit records keep the batch id alone: a record is the
    developer's when its details name the developer, or, when they name none (records written by code that does
    not know it, and records from before batch ids were per developer), when it carries the batch's correlation
    id. `intact` is whether a sealed record's content still matches its content_hash (None: not sealed yet).
    """
    bid = uuid.UUID(str(batch_id))
    batch = session.get(Batch, (developer_id, bid))
    if batch is None:
        return None
    named = AuditRecord.details["developer_id"].astext
    rows = session.execute(
        select(*_CONTENT_COLUMNS, *_SEAL_COLUMNS)
        .where(AuditRecord.batch_id == bid,
               or_(named == developer_id,
                   and_(named.is_(None), AuditRecord.correlation_id == batch.correlation_id)))
        .order_by(AuditRecord.id)
    ).all()
    return [
        {
            "id": row.id,
            "created_at": _utc_iso(row.created_at),
            "correlation_id": row.correlation_id,
            "batch_id": str(row.batch_id),
            "step": row.step,
            "is_replay": row.is_replay,
            "details": row.details,
            "sealed": row.seal_seq is not None,
            "seal_seq": row.seal_seq,
            "content_hash": row.content_hash,
            "prev_hash": row.prev_hash,
            "sealed_at": _utc_iso(row.sealed_at) if row.sealed_at is not None else None,
            "intact": (content_hash(row) == row.content_hash) if row.seal_seq is not None else None,
        }
        for row in rows
    ]
