"""Quarantine: find the events of a batch that make a job fail, record them, and let every job skip them.

Ingest enforces every limit of every stored and derived column, so this should never be needed; it is the
backstop that keeps one unforeseen event from failing a developer's pipeline for good (raw events are
append-only: without it, every later batch and every replay would fail the same way).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from activity.catalog import KNOWN_EVENT_TYPES
from models.admin_alerts import raise_admin_alert
from models.batch_lifecycle import audit
from models.db import dbapi_cursor
from models.tables import QuarantinedEvent, RawEvent

log = logging.getLogger("devpulse.quarantine")

# Bounded effort: beyond this many work runs the failure is not pinned on single events and the job fails.
MAX_ATTEMPTS = 64


def processable(job: str) -> ColumnElement[bool]:
    """The condition a job's reads of raw events add: the event is not currently quarantined for that job.

    Per job: an event that normalization cannot process may still count in the metrics, exactly as the
    aggregation job (which processed it) recorded; each job's derived rows skip its own poison only.
    Events of a type the catalog does not know (stored under a newer minor) are left out as well.
    """
    return and_(RawEvent.type.in_(sorted(KNOWN_EVENT_TYPES)),
                ~exists().where(and_(QuarantinedEvent.developer_id == RawEvent.developer_id,
                                     QuarantinedEvent.event_id == RawEvent.event_id, QuarantinedEvent.job == job,
                                     QuarantinedEvent.released_at.is_(None))))


def _batch_event_ids(session: Session, batch_id: uuid.UUID, job: str) -> list[uuid.UUID]:
    return list(session.execute(select(RawEvent.event_id).where(RawEvent.batch_id == batch_id, processable(job))
                                .order_by(RawEvent.seq)).scalars())


class _Probe:
    """Runs the job's work inside a savepoint with some events quarantined, and reports whether it succeeded."""

    def __init__(self, session: Session, developer_id: str, batch_id: uuid.UUID, job: str,
                 work: Callable[[], Any]) -> None:
        self.session, self.developer_id, self.batch_id, self.job, self.work = session, developer_id, batch_id, job, work
        self.runs = 0

    def works_without(self, excluded: Sequence[uuid.UUID]) -> bool:
        if self.runs >= MAX_ATTEMPTS:
            raise _GiveUp
        self.runs += 1
        savepoint = self.session.begin_nested()
        try:
            self._insert(excluded, "probe")
            self.work()
            return True
        except Exception:
            return False
        finally:
            savepoint.rollback()

    def _insert(self, event_ids: Sequence[uuid.UUID], error: str) -> None:
        if event_ids:
            self.session.add_all([QuarantinedEvent(developer_id=self.developer_id, event_id=e, batch_id=self.batch_id,
                                                   job=self.job, error=error) for e in event_ids])
            self.session.flush()


class _GiveUp(Exception):
    pass


def _culprits(probe: _Probe, candidates: list[uuid.UUID], excluded: list[uuid.UUID]) -> list[uuid.UUID]:
    """Given: work fails with `excluded` quarantined and succeeds with `excluded` + `candidates` quarantined."""
    if len(candidates) == 1:
        return candidates
    half = len(candidates) // 2
    first, second = candidates[:half], candidates[half:]
    if probe.works_without(excluded + first):
        return _culprits(probe, first, excluded)
    bad_second = _culprits(probe, second, excluded + first)
    if probe.works_without(excluded + bad_second):
        return bad_second
    return bad_second + _culprits(probe, first, excluded + bad_second)


def isolate(session: Session, *, developer_id: str, batch_id: uuid.UUID, job: str, correlation_id: str,
            is_replay: bool, work: Callable[[], Any], error: BaseException) -> list[uuid.UUID]:
    """Quarantine the batch's events that make `work` fail with `error`; [] when the failure is not theirs.

    The quarantine rows, an audit record and an admin alert are written in the caller's transaction; the
    caller then runs the work once more, which now skips those events.
    """
    probe = _Probe(session, developer_id, batch_id, job, work)
    try:
        candidates = _batch_event_ids(session, batch_id, job)
        if not candidates or not probe.works_without(candidates):
            return []  # fails without any of this batch's events too: not a poison event of this batch
        culprits = _culprits(probe, candidates, [])
    except _GiveUp:
        return []
    message = f"{type(error).__name__}: {error}"[:1000]
    probe._insert(culprits, message)
    ids = [str(e) for e in culprits]
    audit(session, "events_quarantined", batch_id=batch_id, correlation_id=correlation_id, is_replay=is_replay,
          developer_id=developer_id, job=job, event_ids=ids[:100], count=len(ids), error=message)
    raise_admin_alert(session, "events_quarantined",
                      f"Job {job} could not process {len(ids)} event(s) of batch {batch_id}; they are quarantined",
                      batch_id=batch_id, correlation_id=correlation_id,
                      context={"job": job, "event_ids": ids[:100], "count": len(ids), "error": message})
    log.error("quarantined %d event(s) of batch %s for job %s: %s", len(ids), batch_id, job, message,
              extra={"batch_id": str(batch_id), "developer_id": developer_id, "correlation_id": correlation_id,
                     "is_replay": is_replay, "step": job, "event_ids": ids[:100], "event_count": len(ids)})
    return culprits


def release(session: Session, *, limit: int = 1000) -> dict[uuid.UUID, list[uuid.UUID]]:
    """Release quarantined events (after a fix): {batch_id: event_ids}; the caller replays those batches."""
    rows = session.execute(select(QuarantinedEvent).where(QuarantinedEvent.released_at.is_(None))
                           .order_by(QuarantinedEvent.id).limit(limit).with_for_update(skip_locked=True)).scalars()
    released: dict[uuid.UUID, list[uuid.UUID]] = {}
    for row in rows:
        released.setdefault(row.batch_id, []).append(row.event_id)
    if released:
        session.execute(update(QuarantinedEvent).where(QuarantinedEvent.released_at.is_(None),
                                                       QuarantinedEvent.batch_id.in_(list(released)))
                        .values(released_at=datetime.now(UTC)))
    return released


_QUARANTINE_BATCH = """
INSERT INTO quarantined_events (developer_id, event_id, batch_id, job, error)
SELECT developer_id, event_id, batch_id, %(job)s, %(error)s FROM raw_events
WHERE developer_id = %(developer)s AND batch_id = %(batch)s
ON CONFLICT (developer_id, event_id) WHERE released_at IS NULL DO NOTHING
"""


def quarantine_batch(session: Session, *, developer_id: str, batch_id: uuid.UUID, job: str, error: str) -> int:
    """Quarantine every event of a batch for `job`, when its runs kill the worker (no probing is possible: a probe
    would kill it too). Events already quarantined (for any job) stay as they are. Returns how many were added."""
    with dbapi_cursor(session) as cursor:
        cursor.execute(_QUARANTINE_BATCH, {"developer": developer_id, "batch": str(batch_id), "job": job,
                                           "error": error[:1000]})
        return int(cursor.rowcount)
