"""Recovery of lost batches by evidence (models/recovery.py, the sweeper in tasks/maintenance.py) and fencing by
dispatch attempt (models/batch_lifecycle.py): real PostgreSQL and Redis, the sweeper's own task function."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import timedelta

import redis
from sqlalchemy import select, text

from core.settings import Settings
from models.batch_lifecycle import complete_batch, fail_batch, finish_job, start_job
from models.outbox import claim, finish_dispatch, start_dispatch
from models.tables import AuditRecord, BatchJob, Outbox
from tasks.dispatch import task_ids
from tests.support.factories import batch, event, now
from tests.support.pipeline import persist_body, stored_batch, wait_processed

JOBS = ("aggregate", "normalize", "detect_danger")


def _dispatched(db, *, age: float = 0.0) -> tuple[uuid.UUID, dict]:
    """A stored batch handed to the broker `age` seconds ago; its messages are not published (as if lost)."""
    outcome = persist_body(db, batch([event("file.save", now())]))
    with db.transaction() as s:
        record = claim(s, outcome.outbox_id)
        assert record is not None
        ctx = start_dispatch(s, record)
        finish_dispatch(s, record.id, ctx, task_ids(ctx))
    _age(db, outcome.batch.batch_id, age)
    return outcome.batch.batch_id, ctx


def _age(db, batch_id, seconds: float) -> None:
    with db.transaction() as s:
        s.execute(text("UPDATE batches SET dispatched_at = now() - make_interval(secs => :a),"
                       " updated_at = now() - make_interval(secs => :a) WHERE batch_id = :b"),
                  {"a": seconds, "b": batch_id})


def _start(db, ctx, job, *, task_id=None, retries=0, lease=20.0):
    with db.transaction() as s:
        return start_job(s, ctx["developer_id"], uuid.UUID(ctx["batch_id"]), job,
                         task_id=task_id or task_ids(ctx)[job], is_replay=False, correlation_id=ctx["correlation_id"],
                         attempt=ctx["attempt"], retries=retries, lease_seconds=lease)


def _finish(db, ctx, job) -> bool:
    with db.transaction() as s:
        return finish_job(s, ctx["developer_id"], uuid.UUID(ctx["batch_id"]), job, duration_ms=1,
                          correlation_id=ctx["correlation_id"], is_replay=False, outcome={}, attempt=ctx["attempt"])


def _redispatch(db, batch_id) -> dict:
    """A newer attempt of the batch (a requeue's record, published nowhere)."""
    from models.outbox import enqueue

    with db.transaction() as s:
        b = stored_batch(s, batch_id)
        outbox_id = enqueue(s, b.developer_id, b.batch_id, b.correlation_id)
    with db.transaction() as s:
        record = claim(s, outbox_id)
        ctx = start_dispatch(s, record)
        finish_dispatch(s, record.id, ctx, task_ids(ctx))
    return ctx


def _job(db, batch_id, job) -> BatchJob | None:
    with db.session() as s:
        return s.scalars(select(BatchJob).where(BatchJob.batch_id == batch_id, BatchJob.job == job)).one_or_none()


def _requeued(db, batch_id) -> list[dict]:
    with db.session() as s:
        return [r.details for r in s.scalars(select(AuditRecord).where(AuditRecord.batch_id == batch_id,
                                                                        AuditRecord.step == "requeued"))]


# -- fencing by attempt ---------------------------------------------------------------------------------------


def test_a_late_callback_of_an_old_attempt_never_overwrites_the_newer_outcome(clean_db):
    db = clean_db
    bid, first = _dispatched(db)
    second = _redispatch(db, bid)
    assert (first["attempt"], second["attempt"]) == (1, 2)
    failed = [{"job": "aggregate", "ok": False, "error": "RuntimeError: old"}, {"job": "normalize", "ok": True},
              {"job": "detect_danger", "ok": True}]
    ok = [{"job": j, "ok": True} for j in JOBS]
    with db.transaction() as s:
        assert complete_batch(s, first["developer_id"], bid, ok, "c", False, attempt=2) == "processed"
    with db.transaction() as s:
        assert complete_batch(s, first["developer_id"], bid, failed, "c", False, attempt=1) is None
        assert fail_batch(s, first["developer_id"], bid, "TimeLimitExceeded", "c", False, attempt=1) is False
    with db.session() as s:
        assert (stored_batch(s, bid).status, stored_batch(s, bid).last_error) == ("processed", None)
        assert len(s.scalars(select(AuditRecord).where(AuditRecord.batch_id == bid,
                                                       AuditRecord.step == "completed")).all()) == 1


def test_a_run_of_an_old_attempt_writes_nothing_and_its_late_finish_is_refused(clean_db):
    db = clean_db
    bid, first = _dispatched(db)
    assert _start(db, first, "aggregate").current
    second = _redispatch(db, bid)
    assert _finish(db, first, "aggregate") is False  # a newer attempt exists: its end is ignored
    assert _start(db, first, "normalize").current is False  # its message came back after the new dispatch
    assert _job(db, bid, "normalize") is None
    assert _start(db, second, "aggregate").current
    assert _finish(db, first, "aggregate") is False  # the old run finishing late
    row = _job(db, bid, "aggregate")
    assert (row.status, row.dispatch_attempt) == ("running", 2)
    assert _finish(db, second, "aggregate") is True
    assert _job(db, bid, "aggregate").status == "ok"


def test_a_run_whose_messages_arrive_before_its_dispatch_commits_waits_for_it(clean_db):
    """The publish happens inside the dispatch's transaction: a fast worker must not judge its attempt by the
    dispatch count that transaction is replacing."""
    from models.outbox import enqueue, lock_batch

    db = clean_db
    bid, _ = _dispatched(db)
    with db.transaction() as s:
        b = stored_batch(s, bid)
        outbox_id = enqueue(s, b.developer_id, b.batch_id, b.correlation_id)
    started = {}
    with db.transaction() as s:
        record = claim(s, outbox_id)
        ctx = start_dispatch(s, record, lock_batch(s, record))
        worker = threading.Thread(target=lambda: started.setdefault("run", _start(db, ctx, "aggregate")))
        worker.start()
        time.sleep(0.5)  # the messages are out, the dispatch not yet committed
        finish_dispatch(s, record.id, ctx, task_ids(ctx))
    worker.join(10)
    assert started["run"].current
    assert _job(db, bid, "aggregate").dispatch_attempt == 2


def test_a_redelivered_run_counts_as_lost_and_a_retry_does_not(clean_db):
    db = clean_db
    _, ctx = _dispatched(db)
    assert _start(db, ctx, "aggregate").lost_runs == 0
    assert _start(db, ctx, "aggregate").lost_runs == 1  # same message again: the first run's worker died
    assert _start(db, ctx, "aggregate", retries=1).lost_runs == 1  # Celery's retry of the run: not lost
    assert _start(db, ctx, "aggregate", retries=1).lost_runs == 2
    assert _finish(db, ctx, "aggregate")
    assert _start(db, ctx, "aggregate", retries=2).lost_runs == 0  # after a finished run, counting starts over


# -- the sweeper ----------------------------------------------------------------------------------------------


def test_a_job_whose_lease_ran_out_is_dispatched_again_one_alive_is_not(clean_db, quiet_broker, celery_worker):
    from tasks.maintenance import sweep_stuck_batches

    db = clean_db
    lost, lost_ctx = _dispatched(db, age=60)
    alive, alive_ctx = _dispatched(db, age=60)
    for job in JOBS:  # every job started: only the leases speak
        _start(db, lost_ctx, job)
        _start(db, alive_ctx, job)
    with db.transaction() as s:
        s.execute(text("UPDATE batch_jobs SET lease_expires_at = now() - interval '1 second'"
                       " WHERE batch_id = :b AND job = 'normalize'"), {"b": lost})
    assert sweep_stuck_batches() == [str(lost)]
    assert [d["reason"] for d in _requeued(db, lost)] == ["lease_expired"]
    with db.session() as s:
        assert stored_batch(s, lost).dispatch_count == 2 and stored_batch(s, alive).dispatch_count == 1
    assert sweep_stuck_batches() == []  # once: the old attempt's expired lease says nothing about the new one
    assert wait_processed(db, str(lost)) == "processed"  # the new attempt, on the real worker


def test_a_broker_that_lost_its_messages_gets_every_batch_in_flight_again(clean_db, quiet_broker, celery_worker):
    from tasks.broker_watch import MARKER
    from tasks.maintenance import sweep_stuck_batches

    db = clean_db
    waiting, _ = _dispatched(db, age=1)
    running, ctx = _dispatched(db, age=1)
    _start(db, ctx, "aggregate")
    assert sweep_stuck_batches() == []
    quiet_broker.delete(MARKER)  # FLUSHALL, or a restart without persistence
    assert sorted(sweep_stuck_batches()) == sorted([str(waiting), str(running)])
    assert [d["reason"] for d in _requeued(db, waiting)] == ["broker_lost"]
    assert sweep_stuck_batches() == []
    assert {wait_processed(db, str(b)) for b in (waiting, running)} == {"processed"}


def test_with_nothing_queued_nor_held_a_batch_not_started_is_lost_behind_a_backlog_it_waits(clean_db, redis_url):
    """What the sweeper sees in Redis, and what it concludes. Asked of a Redis database no worker consumes: the
    suite's worker would drain a queue as soon as anything is pushed to it."""
    from models.recovery import BrokerView, lost_batches
    from tasks.broker_watch import MARKER, look

    db = clean_db
    old, _ = _dispatched(db, age=400)
    _, held_ctx = _dispatched(db, age=400)
    fresh, _ = _dispatched(db, age=1)
    url = redis_url.rsplit("/", 1)[0] + "/1"
    client = redis.Redis.from_url(url)
    client.flushdb()
    settings = Settings.from_env(redis_url=url)

    def lost(view) -> list[str]:
        with db.transaction() as s:
            return [str(b.batch_id) for b, _, _ in lost_batches(s, view, lease=timedelta(seconds=20))]

    try:
        first, token = look(settings, None)  # the broker's first use: no loss
        assert first is not None and not first.lost and token
        assert look(settings, token)[0].lost is False
        client.delete(MARKER)  # FLUSHALL, or a restart without persistence
        assert look(settings, token) == (BrokerView(lost=True, idle=True), token)
        assert look(settings, token)[0].lost is False  # the marker is back
        client.lpush("danger", "a message of a long queue")
        busy, _ = look(settings, token)
        assert (busy.lost, busy.idle) == (False, False)
        assert lost(busy) == []  # a backlog: waiting, even after STUCK_AFTER_SECONDS
        client.delete("danger")
        # A worker holds one of the second batch's messages (reserved, not started yet), as kombu keeps it.
        message = {"headers": {"id": task_ids(held_ctx)["normalize"]}, "body": ""}
        client.hset("unacked", "tag-1", json.dumps([message, "normalization", "normalization"]))
        quiet, _ = look(settings, token)
        assert quiet.idle and quiet.reserved == {(held_ctx["batch_id"], held_ctx["attempt"])}
        assert lost(quiet) == [str(old)]  # not the one held, nor the one dispatched a moment ago (`fresh`)
        assert fresh
    finally:
        client.flushdb()
        client.close()


def test_a_batch_whose_callback_was_lost_is_completed_from_its_jobs_once(clean_db, quiet_broker):
    from tasks.maintenance import sweep_stuck_batches

    db = clean_db
    bid, ctx = _dispatched(db, age=60)
    for job in JOBS:
        _start(db, ctx, job)
        assert _finish(db, ctx, job)
    assert sweep_stuck_batches() == []  # finished just now: the callback may still come
    with db.transaction() as s:
        s.execute(text("UPDATE batch_jobs SET finished_at = now() - interval '1 minute' WHERE batch_id = :b"),
                  {"b": bid})
    assert sweep_stuck_batches() == [str(bid)]
    ok = [{"job": j, "ok": True} for j in JOBS]
    with db.transaction() as s:  # the real callback, late
        assert complete_batch(s, ctx["developer_id"], bid, ok, "c", False, attempt=ctx["attempt"]) is None
    with db.session() as s:
        assert stored_batch(s, bid).status == "processed"
        assert len(s.scalars(select(AuditRecord).where(AuditRecord.batch_id == bid,
                                                       AuditRecord.step == "completed")).all()) == 1
        assert s.scalars(select(Outbox).where(Outbox.batch_id == bid)).all()[-1].status == "dispatched"


def test_the_heartbeat_keeps_a_long_job_s_lease(clean_db, celery_app):
    from tasks.context import settings
    from tasks.heartbeat import heartbeat

    db = clean_db
    bid, ctx = _dispatched(db)
    _start(db, ctx, "aggregate", lease=settings().job_lease_seconds)
    first = _job(db, bid, "aggregate").lease_expires_at
    with heartbeat.held(ctx["developer_id"], bid, "aggregate", ctx["attempt"]):
        time.sleep(settings().job_lease_seconds / 4 * 1.6)
    renewed = _job(db, bid, "aggregate").lease_expires_at
    assert renewed > first


def test_every_beat_task_expires_within_its_period():
    """While the workers are down, beat's runs must not pile up in the queue: each expires after its period."""
    from tasks.schedule import BEAT_SCHEDULE

    assert BEAT_SCHEDULE
    for name, entry in BEAT_SCHEDULE.items():
        assert 0 < entry["options"]["expires"] <= entry["schedule"], name
