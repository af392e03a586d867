"""The sweeper re-dispatches through the same path as `celery -A tasks requeue`: a stuck replay stays a replay."""

from __future__ import annotations

from sqlalchemy import select, text

from core.settings import Settings
from models.operations import replay
from models.outbox import claim, finish_dispatch, start_dispatch
from models.tables import AuditRecord, Outbox
from tasks.dispatch import task_ids
from tests.support.factories import batch, event, now
from tests.support.pipeline import persist_body, wait_for


def test_a_stuck_replay_is_swept_as_a_replay(clean_db, celery_app, celery_worker, quiet_broker):
    from tasks.maintenance import sweep_stuck_batches

    db = clean_db
    outcome = persist_body(db, batch([event("file.save", now())]))
    bid = outcome.batch.batch_id
    with db.transaction() as s:  # the first run completed long ago
        s.execute(text("UPDATE batches SET status = 'processed' WHERE batch_id = :id"), {"id": bid})
        s.execute(text("UPDATE outbox SET status = 'dispatched' WHERE batch_id = :id"), {"id": bid})
    # A replay is requested, handed to the broker, and its messages are lost (the publish is not made here).
    [row] = replay(db, lambda outbox_id: False, batch_id=bid)
    with db.transaction() as s:
        record = claim(s, row.outbox_id)
        assert record is not None and record.is_replay
        ctx = start_dispatch(s, record)
        finish_dispatch(s, record.id, ctx, task_ids(ctx))
        s.execute(text("UPDATE batches SET updated_at = now() - make_interval(secs => :age),"
                       " dispatched_at = now() - make_interval(secs => :age) WHERE batch_id = :id"),
                  {"age": Settings.from_env().stuck_after_seconds + 5, "id": bid})

    assert sweep_stuck_batches() == [str(bid)]
    with db.session() as s:
        latest = s.scalars(select(Outbox).where(Outbox.batch_id == bid).order_by(Outbox.id.desc())).first()
        assert latest is not None and latest.is_replay is True
        requeued = s.scalars(select(AuditRecord).where(AuditRecord.batch_id == bid,
                                                       AuditRecord.step == "requeued")).one()
        assert requeued.is_replay is True and requeued.details["requested_by"] == "sweeper"
    def processed() -> bool:
        with db.session() as s:
            return s.execute(text("SELECT status FROM batches WHERE batch_id = :id"), {"id": bid}).scalar_one() == (
                "processed")

    wait_for(processed)


def test_under_a_backlog_the_sweeper_leaves_queued_batches_alone_until_overtaken(clean_db):
    """A batch waiting in the queue longer than stuck_after_seconds is not lost: re-dispatching it only adds work
    to the backlog. It is stuck once batches dispatched later have completed (its messages are gone). A pipeline
    that completed nothing at all for that long overtook nothing: its workers are down or busy, and the
    evidence rules (tests/tasks/test_recovery.py) tell whether the batch's messages are gone."""
    from datetime import timedelta

    from models.operations import requeue_candidates

    db = clean_db
    stuck = timedelta(seconds=300)
    queued = persist_body(db, batch([event("file.save", now())])).batch.batch_id
    other = persist_body(db, batch([event("file.save", now())])).batch.batch_id

    def age(batch_id, status, dispatched_ago, updated_ago):
        with db.transaction() as s:
            s.execute(text("UPDATE outbox SET status = 'dispatched' WHERE batch_id = :id"), {"id": batch_id})
            s.execute(text("UPDATE batches SET status = :st, dispatched_at = now() - make_interval(secs => :d),"
                           " updated_at = now() - make_interval(secs => :u) WHERE batch_id = :id"),
                      {"st": status, "d": dispatched_ago, "u": updated_ago, "id": batch_id})

    def candidates():
        with db.session() as s:
            return [str(b.batch_id) for b, _, _ in requeue_candidates(s, stuck_for=stuck, overtaken=True)]

    age(queued, "dispatched", 400, 400)
    age(other, "processed", 390, 10)  # dispatched 10 s after it and completed: the pipeline is busy, not past it
    assert candidates() == []
    age(other, "processed", 200, 10)  # dispatched 200 s after it and already completed: overtaken
    assert candidates() == [str(queued)]
    age(other, "processed", 390, 1000)  # nothing completed for 300 s (workers down): still waiting
    assert candidates() == []
    with db.session() as s:  # the operator's command keeps the plain rule
        assert len(requeue_candidates(s, stuck_for=stuck)) == 1
