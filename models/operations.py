"""Operator actions on batches: the logic behind `celery -A tasks replay | requeue | batches`.

Plain functions over the database. Publishing is handed in as a callback (`publish(outbox_id) -> bool`,
in practice tasks.dispatch.dispatch_record), so models/ never imports tasks/. Every re-dispatch goes
through a new outbox record committed first: if the publish fails, the relay publishes it later.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, tuple_, update
from sqlalchemy.orm import Session, aliased

from models.batch_lifecycle import audit, find_batch
from models.db import Database
from models.outbox import enqueue
from models.quarantine import release
from models.tables import Batch, BatchStatus, Outbox, QuarantinedEvent

Publish = Callable[[int], bool]

QUEUED = "queued (the relay will publish it)"


class UnknownBatchError(LookupError):
    pass


class AmbiguousBatchError(LookupError):
    """A batch id alone names batches of several developers (batch ids are unique per developer only)."""

    def __init__(self, batch_id: uuid.UUID, developers: list[str]) -> None:
        super().__init__(f"batch {batch_id} belongs to {len(developers)} developers ({', '.join(developers)}); "
                         "choose one with --developer")
        self.batch_id = batch_id
        self.developers = developers


# --- results ------------------------------------------------------------------------------------------------


@dataclass
class ActionRow:
    """One line of what an operator command did (or would do) to a batch."""

    batch_id: str
    developer_id: str
    status: str  # the batch's status when selected
    reason: str
    action: str
    accepted: int = 0
    replay_count: int = 0
    outbox_id: int | None = None

    @classmethod
    def of(cls, batch: Batch, reason: str, action: str, outbox_id: int | None = None) -> ActionRow:
        return cls(str(batch.batch_id), batch.developer_id, batch.status, reason, action, batch.accepted,
                   batch.replay_count, outbox_id)


def _publish_all(queued: list[ActionRow], publish: Publish, done: str) -> None:
    for row in queued:
        assert row.outbox_id is not None
        row.action = done if publish(row.outbox_id) else QUEUED


# --- replay -------------------------------------------------------------------------------------------------


def replay_skip_reason(batch: Batch) -> str | None:
    if batch.accepted == 0:
        return "no accepted events"
    if batch.status not in BatchStatus.terminal():
        return f"in flight ({batch.status}); use requeue for stuck batches"
    return None


def replay_candidates(session: Session, *, batch_id: uuid.UUID | None = None, developer_id: str | None = None,
                      since: datetime | None = None, until: datetime | None = None,
                      lock: bool = False) -> list[Batch]:
    """One batch by id, of `developer_id` if given (UnknownBatchError if missing; AmbiguousBatchError if the id
    alone names batches of several developers), or a developer's batches with accepted events whose event time
    span [first_ts, last_ts] overlaps [since, until)."""
    if batch_id is not None:
        query = select(Batch).where(Batch.batch_id == batch_id)
        if developer_id is not None:
            query = query.where(Batch.developer_id == developer_id)
        query = query.order_by(Batch.developer_id)
    elif developer_id is not None:
        query = select(Batch).where(Batch.developer_id == developer_id, Batch.accepted > 0)
        if since is not None:
            query = query.where(Batch.last_ts >= since)
        if until is not None:
            query = query.where(Batch.first_ts < until)
        query = query.order_by(Batch.first_ts, Batch.received_at)
    else:
        raise ValueError("select a batch or a developer")
    if lock:
        query = query.with_for_update()
    batches = list(session.execute(query).scalars())
    if batch_id is not None and not batches:
        raise UnknownBatchError(f"unknown batch {batch_id}" + (f" of developer {developer_id}" if developer_id else ""))
    if batch_id is not None and len(batches) > 1:
        raise AmbiguousBatchError(batch_id, [b.developer_id for b in batches])
    return batches


def replay(db: Database, publish: Publish, *, batch_id: uuid.UUID | None = None, developer_id: str | None = None,
           since: datetime | None = None, until: datetime | None = None, dry_run: bool = False,
           requested_by: str = "cli") -> list[ActionRow]:
    """Re-run the downstream chord of the selected batches from their persisted events.

    Per batch: replay_count + 1, an audit record `replay_requested` (is_replay), a new outbox record
    with is_replay, committed together; then each record is published. The jobs recompute their rows
    from stored events, so a replay changes nothing a first run would not have produced.
    """
    rows: list[ActionRow] = []
    queued: list[ActionRow] = []
    with db.transaction() as session:
        for batch in replay_candidates(session, batch_id=batch_id, developer_id=developer_id, since=since,
                                       until=until, lock=not dry_run):
            skip = replay_skip_reason(batch)
            if skip is not None:
                rows.append(ActionRow.of(batch, skip, "skipped"))
                continue
            if dry_run:
                rows.append(ActionRow.of(batch, "replay requested", "would replay"))
                continue
            row = _enqueue_replay(session, batch, "replay requested", requested_by=requested_by)
            rows.append(row)
            queued.append(row)
    _publish_all(queued, publish, "replayed")
    return rows


def _enqueue_replay(session: Session, batch: Batch, reason: str, *, requested_by: str,
                    **details: Any) -> ActionRow:
    """replay_count + 1, an audit record `replay_requested` (is_replay) and a new outbox record with is_replay."""
    status = batch.status
    batch.replay_count += 1
    batch.updated_at = datetime.now(UTC)
    audit(session, "replay_requested", batch_id=batch.batch_id, correlation_id=batch.correlation_id,
          is_replay=True, developer_id=batch.developer_id, replay=batch.replay_count, previous_status=status,
          requested_by=requested_by, **details)
    outbox_id = enqueue(session, batch.developer_id, batch.batch_id, batch.correlation_id, is_replay=True)
    return ActionRow.of(batch, reason, "enqueued", outbox_id)


def requeue_quarantined(db: Database, publish: Publish, *, limit: int = 1000, dry_run: bool = False,
                        requested_by: str = "cli") -> list[ActionRow]:
    """Release quarantined events (after a fix) and replay their batches, so every job processes them again."""
    rows: list[ActionRow] = []
    with db.transaction() as session:
        if dry_run:
            pending = session.execute(
                select(QuarantinedEvent.developer_id, QuarantinedEvent.batch_id, func.count())
                .where(QuarantinedEvent.released_at.is_(None))
                .group_by(QuarantinedEvent.developer_id, QuarantinedEvent.batch_id).limit(limit)).all()
            for developer_id, batch_id, count in pending:
                batch = find_batch(session, developer_id, batch_id)
                if batch is not None:
                    rows.append(ActionRow.of(batch, f"{count} quarantined event(s)", "would release and replay"))
            return rows
        released = release(session, limit=limit)
        for (developer_id, batch_id), event_ids in _released_by_batch(session, released).items():
            batch = find_batch(session, developer_id, batch_id, lock=True)
            if batch is not None:
                rows.append(_enqueue_replay(session, batch, f"{len(event_ids)} quarantined event(s) released",
                                            requested_by=requested_by,
                                            released_event_ids=[str(e) for e in event_ids[:100]]))
    _publish_all(rows, publish, "replayed")
    return rows


def _released_by_batch(session: Session, released: dict[uuid.UUID, list[uuid.UUID]]
                       ) -> dict[tuple[str, uuid.UUID], list[uuid.UUID]]:
    """{(developer_id, batch_id): event_ids} of the quarantine rows that `release` has just released.

    `release` reports batch ids alone, and a batch id is unique per developer only: the developers come from the
    released rows themselves, i.e. the rows of these batch ids whose released_at is the stamp that one release
    wrote (the latest among the reported events).
    """
    if not released:
        return {}
    event_ids = [e for ids in released.values() for e in ids]
    stamp = session.execute(
        select(func.max(QuarantinedEvent.released_at))
        .where(QuarantinedEvent.batch_id.in_(list(released)), QuarantinedEvent.event_id.in_(event_ids))
    ).scalar_one()
    rows = session.execute(
        select(QuarantinedEvent.developer_id, QuarantinedEvent.batch_id, QuarantinedEvent.event_id)
        .where(QuarantinedEvent.batch_id.in_(list(released)), QuarantinedEvent.released_at == stamp)
        .order_by(QuarantinedEvent.id)
    )
    found: dict[tuple[str, uuid.UUID], list[uuid.UUID]] = {}
    for developer_id, batch_id, event_id in rows:
        found.setdefault((developer_id, batch_id), []).append(event_id)
    return found


# --- requeue ------------------------------------------------------------------------------------------------


def _last_is_replay(session: Session, developer_id: str, batch_id: uuid.UUID) -> bool:
    """Whether the batch's latest dispatch was a replay (a requeue continues it as such)."""
    latest = session.execute(
        select(Outbox.is_replay).where(Outbox.developer_id == developer_id, Outbox.batch_id == batch_id)
        .order_by(Outbox.id.desc()).limit(1)
    ).scalar_one_or_none()
    return bool(latest)


def _ago(moment: datetime | None) -> str:
    if moment is None:
        return "?"
    seconds = int((datetime.now(UTC) - moment).total_seconds())
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


# A batch counts as overtaken once batches dispatched this much later have completed.
OVERTAKEN_MARGIN = timedelta(seconds=30)


def pipeline_frontier(session: Session, within: timedelta) -> datetime | None:
    """The latest dispatch time among batches completed within `within`; None when none completed (idle)."""
    return session.execute(
        select(func.max(Batch.dispatched_at)).where(Batch.status.in_(BatchStatus.terminal()),
                                                    Batch.updated_at > datetime.now(UTC) - within)
    ).scalar_one_or_none()


def requeue_candidates(session: Session, *, stuck_for: timedelta | None = None, failed: bool = False,
                       dead_letter: bool = False, limit: int = 100, lock: bool = False,
                       overtaken: bool = False) -> list[tuple[Batch, str, dict[str, Any]]]:
    """(batch, reason, audit details) for each batch to re-dispatch, each batch once.

    `overtaken` (the sweeper's backstop): an in-flight batch counts as stuck only when the pipeline has moved
    past it (batches dispatched later have completed since). Under a backlog, or while the workers are down, a
    batch waits in the queue longer than `stuck_for` without being lost; dispatching it again would only add
    work to the backlog.

    Batches that already have a pending outbox record are left alone (the relay will publish it);
    a dead-letter record counts only if no later record exists for its batch.
    """
    pending = select(Outbox.developer_id, Outbox.batch_id).where(Outbox.status == "pending")
    not_pending = tuple_(Batch.developer_id, Batch.batch_id).not_in(pending)
    found: dict[tuple[str, uuid.UUID], tuple[Batch, str, dict[str, Any]]] = {}

    def locked(query: Any) -> Any:
        return query.with_for_update(of=Batch, skip_locked=True) if lock else query

    batch: Batch
    if stuck_for is not None:
        query = (select(Batch)
                 .where(Batch.status.in_(BatchStatus.in_flight()),
                        Batch.updated_at < datetime.now(UTC) - stuck_for, not_pending)
                 .order_by(Batch.updated_at).limit(limit))
        frontier = pipeline_frontier(session, stuck_for) if overtaken else None
        if frontier is not None:
            query = query.where(Batch.updated_at < frontier - OVERTAKEN_MARGIN)
        # An idle pipeline (nothing completed) overtook nothing: the sweeper's evidence rules
        # (models/recovery.py) tell a lost batch there from one waiting behind stopped workers.
        for batch in ([] if overtaken and frontier is None else session.execute(locked(query)).scalars()):
            found.setdefault((batch.developer_id, batch.batch_id),
                             (batch, f"stuck in {batch.status} for {_ago(batch.updated_at)}",
                              {"reason": "stuck", "stuck_for_seconds": stuck_for.total_seconds()}))
    if failed:
        query = (select(Batch).where(Batch.status == BatchStatus.FAILED, not_pending)
                 .order_by(Batch.updated_at).limit(limit))
        for batch in session.execute(locked(query)).scalars():
            found.setdefault((batch.developer_id, batch.batch_id),
                             (batch, f"failed: {(batch.last_error or '?')[:60]}",
                              {"reason": "failed", "error": batch.last_error}))
    if dead_letter:
        later = aliased(Outbox)
        dead = (select(Outbox, Batch)
                .join(Batch, (Batch.developer_id == Outbox.developer_id) & (Batch.batch_id == Outbox.batch_id))
                .where(Outbox.status == "dead_letter",
                       ~exists().where(later.developer_id == Outbox.developer_id, later.batch_id == Outbox.batch_id,
                                       later.id > Outbox.id))
                .order_by(Outbox.id).limit(limit))
        for record, batch in session.execute(locked(dead)).tuples():
            found.setdefault((batch.developer_id, batch.batch_id),
                             (batch, f"outbox #{record.id} dead-lettered after {record.attempts} attempt(s)",
                              {"reason": "dead_letter", "dead_outbox_id": record.id,
                               "error": record.last_error, "is_replay": record.is_replay}))
    return list(found.values())


def requeue(db: Database, publish: Publish, *, stuck_for: timedelta | None = None, failed: bool = False,
            dead_letter: bool = False, limit: int = 100, dry_run: bool = False,
            requested_by: str = "cli", overtaken: bool = False) -> list[ActionRow]:
    """Re-dispatch stuck, failed and/or dead-lettered batches through a NEW pending outbox record
    (a dead-letter record stays as history)."""
    return requeue_selected(db, publish, lambda session: requeue_candidates(
        session, stuck_for=stuck_for, failed=failed, dead_letter=dead_letter, limit=limit, lock=not dry_run,
        overtaken=overtaken), dry_run=dry_run, requested_by=requested_by)


def requeue_selected(db: Database, publish: Publish,
                     select_batches: Callable[[Session], list[tuple[Batch, str, dict[str, Any]]]], *,
                     dry_run: bool = False, requested_by: str = "cli") -> list[ActionRow]:
    """Re-dispatch the batches `select_batches` returns (locked, with a reason and audit details), each through a
    new pending outbox record written with a `requeued` audit record, then published."""
    rows: list[ActionRow] = []
    queued: list[ActionRow] = []
    with db.transaction() as session:
        for batch, reason, details in select_batches(session):
            if dry_run:
                rows.append(ActionRow.of(batch, reason, "would requeue"))
                continue
            is_replay = details.pop("is_replay") if "is_replay" in details else _last_is_replay(
                session, batch.developer_id, batch.batch_id)
            outbox_id = enqueue(session, batch.developer_id, batch.batch_id, batch.correlation_id,
                                is_replay=is_replay)
            session.execute(update(Batch).where(Batch.developer_id == batch.developer_id,
                                                Batch.batch_id == batch.batch_id).values(updated_at=func.now()))
            audit(session, "requeued", batch_id=batch.batch_id, correlation_id=batch.correlation_id,
                  is_replay=is_replay, developer_id=batch.developer_id, status=batch.status, outbox_id=outbox_id,
                  requested_by=requested_by, **details)
            row = ActionRow.of(batch, reason, "enqueued", outbox_id)
            rows.append(row)
            queued.append(row)
    _publish_all(queued, publish, "requeued")
    return rows


# --- listing ------------------------------------------------------------------------------------------------


def list_batches(session: Session, *, status: str | None = None, developer_id: str | None = None,
                 limit: int = 50) -> list[Batch]:
    """The most recently received batches first."""
    query = select(Batch)
    if status is not None:
        query = query.where(Batch.status == status)
    if developer_id is not None:
        query = query.where(Batch.developer_id == developer_id)
    return list(session.execute(query.order_by(Batch.received_at.desc()).limit(limit)).scalars())
