"""How the sweeper tells a lost batch from a waiting one (tasks/maintenance.py), from evidence, not age alone.

A batch's current dispatch attempt is `batches.dispatch_count`; its header jobs' rows say which attempt they ran
for (`batch_jobs.dispatch_attempt`), and a running job holds a lease its worker renews. An in-flight batch with
no pending outbox record is lost when:

- a job of its current attempt is `running` and its lease ran out: the worker died (SIGKILL, out of memory,
  the machine went away);
- the broker lost everything (FLUSHALL, a restart without persistence: `broker_lost`): every message
  published before now is gone;
- the header queues are empty and no worker holds a message of its attempt (`broker_idle`), yet a job of
  that attempt has not started for a lease since the dispatch: nothing is waiting, so nothing will come.

Under a backlog none of these holds for a batch that is merely queued. A batch whose jobs of the current attempt
all finished a lease ago without a completion lost only its callback: it is completed from the jobs' recorded
outcomes (`orphaned_completions`), with the same effect the callback would have had.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, exists, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from models.batch_lifecycle import HEADER_JOBS
from models.tables import Batch, BatchJob, BatchStatus, BrokerMarker, Outbox

Candidate = tuple[Batch, str, dict[str, Any]]


@dataclass(frozen=True)
class BrokerView:
    """What the broker showed the sweeper (tasks/broker_watch.py)."""

    lost: bool = False  # its contents were lost since the last look
    idle: bool = False  # the header queues are empty
    # (batch_id, dispatch attempt) of every message a worker holds (reserved or running, not acknowledged).
    reserved: frozenset[tuple[str, int]] = field(default_factory=frozenset)


def remembered_marker(session: Session, name: str = "broker") -> str | None:
    """The token the sweeper left in the broker, locked until the caller commits (sweeps take turns)."""
    return session.execute(select(BrokerMarker.token).where(BrokerMarker.name == name).with_for_update()
                           ).scalar_one_or_none()


def remember_marker(session: Session, token: str, name: str = "broker") -> None:
    stmt = insert(BrokerMarker).values(name=name, token=token)
    session.execute(stmt.on_conflict_do_update(index_elements=[BrokerMarker.name], set_={"token": token}))


def _not_pending() -> Any:
    return tuple_(Batch.developer_id, Batch.batch_id).not_in(
        select(Outbox.developer_id, Outbox.batch_id).where(Outbox.status == "pending"))


def _jobs_of_current_attempt() -> Any:
    # `>=`: a run of a publish whose commit was lost carries the next attempt number (see start_job).
    return and_(BatchJob.developer_id == Batch.developer_id, BatchJob.batch_id == Batch.batch_id,
                BatchJob.dispatch_attempt >= Batch.dispatch_count)


def lost_batches(session: Session, broker: BrokerView | None, *, lease: timedelta,
                 limit: int = 100) -> list[Candidate]:
    """(batch, reason, audit details) of each in-flight batch whose current attempt is lost, each batch once,
    rows locked (SKIP LOCKED) for the caller's re-dispatch. `broker` None: Redis could not be asked."""
    base = (select(Batch).where(Batch.status.in_(BatchStatus.in_flight()), _not_pending())
            .order_by(Batch.dispatched_at).limit(limit).with_for_update(of=Batch, skip_locked=True))
    found: dict[tuple[str, uuid.UUID], Candidate] = {}
    expired = exists().where(_jobs_of_current_attempt(), BatchJob.status == "running",
                             BatchJob.lease_expires_at < func.now())
    for batch in session.execute(base.where(expired)).scalars():
        found[(batch.developer_id, batch.batch_id)] = (batch, "a job's lease ran out (its worker died)",
                                                       {"reason": "lease_expired"})
    if broker is not None and broker.lost:
        for batch in session.execute(base).scalars():
            found.setdefault((batch.developer_id, batch.batch_id),
                             (batch, "the broker lost its messages", {"reason": "broker_lost"}))
    elif broker is not None and broker.idle:
        started = select(func.count()).where(_jobs_of_current_attempt()).scalar_subquery()
        # Since its dispatch; a batch whose dispatch commit was lost (the web died mid-publish, yet a message of
        # it ran) has no dispatched_at: since its processing began, else since it was received.
        since = func.coalesce(Batch.dispatched_at, Batch.processing_started_at, Batch.received_at)
        quiet = base.where(started < len(HEADER_JOBS), since < func.now() - lease)
        for batch in session.execute(quiet).scalars():
            if (str(batch.batch_id), batch.dispatch_count) in broker.reserved:
                continue
            found.setdefault((batch.developer_id, batch.batch_id),
                             (batch, "its messages are neither queued nor held by a worker",
                              {"reason": "messages_lost"}))
    return list(found.values())


@dataclass(frozen=True)
class Orphan:
    """A batch whose callback was lost, with the results that callback would have received (header order)."""

    batch: Batch
    results: list[dict[str, Any]]
    is_replay: bool


def orphaned_completions(session: Session, *, lease: timedelta, limit: int = 100) -> list[Orphan]:
    """In-flight batches whose header jobs of the current attempt all finished over a lease ago, rows locked
    (SKIP LOCKED) for the caller's completion."""
    finished = (select(func.count()).where(_jobs_of_current_attempt(), BatchJob.status.in_(("ok", "failed")),
                                           BatchJob.finished_at < func.now() - lease).scalar_subquery())
    batches = list(session.execute(
        select(Batch).where(Batch.status.in_(BatchStatus.in_flight()), _not_pending(),
                            finished == len(HEADER_JOBS))
        .order_by(Batch.dispatched_at).limit(limit).with_for_update(of=Batch, skip_locked=True)).scalars())
    orphans = []
    for batch in batches:
        jobs = {job.job: job for job in session.execute(
            select(BatchJob).where(BatchJob.developer_id == batch.developer_id, BatchJob.batch_id == batch.batch_id,
                                   BatchJob.dispatch_attempt >= batch.dispatch_count)).scalars()}
        results = [{"job": name, "ok": False, "error": jobs[name].error} if jobs[name].status == "failed"
                   else {"job": name, "ok": True} for name in HEADER_JOBS]
        orphans.append(Orphan(batch, results, any(job.is_replay for job in jobs.values())))
    return orphans
