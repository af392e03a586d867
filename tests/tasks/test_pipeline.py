"""The batch chord (tasks/pipeline.py, tasks/dispatch.py, models/batch_lifecycle.py) on the real worker.

Every test goes through the real Redis broker and result backend and an in-process worker (threads pool), so
monkeypatching a job function makes that job fail inside the real chord.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from celery.result import AsyncResult
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

import tasks.pipeline
from core.settings import Settings
from models.batch_lifecycle import complete_batch
from models.outbox import claim, finish_dispatch, start_dispatch
from models.tables import AdminAlert, AuditRecord, BatchJob, MetricSlot, NormalizedEvent, Outbox
from tasks.dispatch import build_chord, dispatch_record, relay, task_ids
from tests.support.factories import auth, batch, event, now
from tests.support.pipeline import persist_body, stored_batch, wait_for, wait_processed

CONTEXT_KEYS = {"batch_id", "developer_id", "correlation_id", "received_at", "event_count", "first_ts", "last_ts",
                "is_replay", "attempt"}
JOBS = ("aggregate", "normalize", "detect_danger")


def three_events() -> list[dict[str, Any]]:
    t0 = now() - timedelta(minutes=30)
    return [
        event("file.edit", t0, file="src/a.py", lines_added=3, lines_deleted=1, chars_typed=40),
        event("file.save", t0 + timedelta(seconds=60), file="src/a.py"),
        event("git.commit", t0 + timedelta(seconds=100), files_changed=1),
    ]


def post(client, token: str, events: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body = batch(events or three_events())
    response = client.post("/api/workflow/events/orchestrate", json=body, headers=auth(token))
    assert response.status_code == 202, response.get_json()
    return {**body, "response": response.get_json()}


def view(client, token: str, batch_id: str) -> dict[str, Any]:
    response = client.get(f"/api/workflow/batches/{batch_id}", headers=auth(token))
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def audit_steps(db, batch_id: str) -> list[str]:
    with db.session() as s:
        return list(s.scalars(select(AuditRecord.step).where(AuditRecord.batch_id == uuid.UUID(batch_id))
                              .order_by(AuditRecord.id)))


def admin_alerts(db, batch_id: str) -> list[AdminAlert]:
    with db.session() as s:
        return list(s.scalars(select(AdminAlert).where(AdminAlert.batch_id == uuid.UUID(batch_id))))


def stored_context(celery_app, batch_id: str, attempt: int = 1) -> dict[str, Any]:
    """The context the header jobs really received, read back from the result backend (result_extended)."""
    ids = task_ids({"batch_id": batch_id, "developer_id": "dev-1", "attempt": attempt})
    contexts = []
    for job in JOBS:
        result = AsyncResult(ids[job], app=celery_app)
        assert result.args is not None and len(result.args) == 1 and not result.kwargs
        contexts.append(result.args[0])
    assert contexts[0] == contexts[1] == contexts[2]
    return contexts[0]


def iso_time(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


# -- 1. lifecycle, context, routing ---------------------------------------------------------------------------


def test_lifecycle_visible_in_the_batch_view(pipeline_client, make_token, db, celery_app):
    token = make_token("dev-1")
    sent = post(pipeline_client, token)
    bid = sent["batch_id"]
    assert wait_processed(db, bid) == "processed"

    v = view(pipeline_client, token, bid)
    assert v["status"] == "processed"
    assert (v["replay_count"], v["dispatch_count"], v["last_error"]) == (0, 1, None)
    assert iso_time(v["received_at"]) <= iso_time(v["dispatched_at"]) <= iso_time(v["processing_started_at"]) \
        <= iso_time(v["completed_at"])
    assert set(v["jobs"]) == set(JOBS)
    for name, job in v["jobs"].items():
        assert job["status"] == "ok", (name, job)
        assert job["attempts"] == 1
        assert job["error"] is None
        assert job["task_id"] == task_ids({"batch_id": bid, "developer_id": "dev-1", "attempt": 1})[name]
        assert isinstance(job["duration_ms"], int) and job["duration_ms"] >= 0
        assert iso_time(v["processing_started_at"]) <= iso_time(job["started_at"]) <= iso_time(job["finished_at"]) \
            <= iso_time(v["completed_at"])

    # persisted -> dispatched -> processing (jobs) -> processed, in that order in the audit trail.
    steps = audit_steps(db, bid)
    assert steps[:4] == ["received", "validated", "persisted", "dispatched"]
    assert sorted(steps[4:-1]) == sorted(["job_started"] * 3 + ["job_finished"] * 3)
    assert steps[-1] == "completed"

    # The jobs got exactly the small context: ids and a few numbers, never the events.
    ctx = stored_context(celery_app, bid)
    assert set(ctx) == CONTEXT_KEYS
    assert ctx["batch_id"] == bid
    assert ctx["developer_id"] == "dev-1"
    assert ctx["correlation_id"] == sent["response"]["correlation_id"]
    assert (ctx["event_count"], ctx["is_replay"], ctx["attempt"]) == (3, False, 1)
    assert iso_time(ctx["first_ts"]) == iso_time(v["first_ts"])
    assert iso_time(ctx["last_ts"]) == iso_time(v["last_ts"])
    assert iso_time(ctx["received_at"]) == iso_time(v["received_at"])
    callback = AsyncResult(task_ids(ctx)["mark_batch_processed"], app=celery_app)
    assert callback.args[1] == ctx
    assert [r["job"] for r in callback.args[0]] == list(JOBS) and all(r["ok"] for r in callback.args[0])
    payload = json.dumps([AsyncResult(i, app=celery_app).args for i in task_ids(ctx).values()])
    for ev in sent["events"]:
        assert ev["event_id"] not in payload

    # Each job ran from its own queue.
    queues = {job: AsyncResult(task_ids(ctx)[job], app=celery_app).queue for job in (*JOBS, "mark_batch_processed")}
    assert queues == {"aggregate": "aggregation", "normalize": "normalization", "detect_danger": "danger",
                      "mark_batch_processed": "pipeline"}

    # A replay runs the chord again as attempt 2, flagged as a replay, and is counted in the view.
    from models.operations import replay

    [row] = replay(db, lambda outbox_id: dispatch_record(db, celery_app, outbox_id), batch_id=uuid.UUID(bid))
    assert row.action == "replayed"
    replayed = wait_for(lambda: (r := view(pipeline_client, token, bid))["status"] == "processed"
                        and r["dispatch_count"] == 2 and r)
    assert replayed["replay_count"] == 1
    assert all(job["is_replay"] and job["task_id"].startswith(f"{bid}.2.") for job in replayed["jobs"].values())
    again = stored_context(celery_app, bid, attempt=2)
    assert again == {**ctx, "is_replay": True, "attempt": 2}


def test_chord_routing_and_signatures(celery_app):
    ctx = {"batch_id": str(uuid.uuid4()), "developer_id": "dev-1", "correlation_id": "c-1",
           "received_at": now().isoformat(), "event_count": 2, "first_ts": None, "last_ts": None,
           "is_replay": False, "attempt": 3}
    canvas = build_chord(celery_app, ctx)
    router = celery_app.amqp.router
    expected = {"devpulse.aggregate": "aggregation", "devpulse.normalize": "normalization",
                "devpulse.detect_danger": "danger"}
    header = list(canvas.tasks)
    assert sorted(sig.task for sig in header) == sorted(expected)
    for sig in header:
        assert sig.args == (ctx,) and not sig.kwargs
        assert sig.options["task_id"] == task_ids(ctx)[sig.task.removeprefix("devpulse.")]
        assert sig.options["task_id"].startswith(f"{ctx['batch_id']}.3.{sig.task.removeprefix('devpulse.')}.")
        assert sig.options["headers"] == {"correlation_id": "c-1", "batch_id": ctx["batch_id"]}
        assert router.route(dict(sig.options), sig.task, sig.args, sig.kwargs)["queue"].name == expected[sig.task]
    # A batch id is unique per developer only: another developer's batch of the same id gets its own task ids.
    assert set(task_ids(ctx).values()).isdisjoint(task_ids({**ctx, "developer_id": "dev-2"}).values())
    body = canvas.body
    assert body.task == "devpulse.mark_batch_processed" and body.args == (ctx,)
    assert router.route(dict(body.options), body.task, body.args, body.kwargs)["queue"].name == "pipeline"
    [errback] = body.options["link_error"]
    assert errback["task"] == "devpulse.mark_batch_failed" and errback["kwargs"] == {"ctx": ctx}
    assert router.route({}, "devpulse.mark_batch_failed")["queue"].name == "pipeline"

    conf = celery_app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert 0 < conf.task_soft_time_limit < conf.task_time_limit
    assert (conf.task_serializer, conf.result_serializer, list(conf.accept_content)) == ("json", "json", ["json"])


# -- 2. failure isolation and retries -------------------------------------------------------------------------


def test_a_failing_danger_job_does_not_keep_the_batch_from_completing(
        pipeline_client, make_token, db, monkeypatch):
    def explode(session, batch_row, ctx):
        raise RuntimeError("rule exploded")

    monkeypatch.setattr(tasks.pipeline, "_detect", explode)
    token = make_token("dev-1")
    bid = post(pipeline_client, token)["batch_id"]
    assert wait_processed(db, bid) == "processed_with_errors"

    v = view(pipeline_client, token, bid)
    failed = v["jobs"]["detect_danger"]
    assert failed["status"] == "failed"
    assert failed["attempts"] == 1  # not a transient error: no retry
    assert failed["error"] == "RuntimeError: rule exploded"
    assert failed["finished_at"] is not None
    assert v["jobs"]["aggregate"]["status"] == v["jobs"]["normalize"]["status"] == "ok"
    assert v["last_error"] == "detect_danger: RuntimeError: rule exploded"
    [alert] = admin_alerts(db, bid)
    assert alert.kind == "job_failed"
    assert alert.context["job"] == "detect_danger" and "rule exploded" in alert.context["error"]
    # The failure record names the events involved and the processing state (nothing of the job committed).
    with db.session() as s:
        [failed] = s.scalars(select(AuditRecord).where(AuditRecord.step == "job_failed")).all()
        stored = [str(e) for e in s.scalars(select(NormalizedEvent.event_id).order_by(NormalizedEvent.seq))]
    assert (failed.details["event_ids"], failed.details["event_count"]) == (stored, 3)
    state = failed.details["state"]
    assert (state["job_status"], state["attempts"], state["work_committed"]) == ("failed", 1, False)
    assert state["batch_status"] in ("processing", "processed_with_errors") and state["quarantined_events"] == 0
    assert failed.is_replay is False and alert.context["event_ids"] == stored
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(NormalizedEvent)) == 3
        days = s.scalars(select(MetricSlot)).all()
        assert sum(d.events for d in days) == 3 and sum(d.commits for d in days) == 1
        [completed] = s.scalars(select(AuditRecord).where(AuditRecord.step == "completed")).all()
        assert completed.details["failed_jobs"] == ["detect_danger"]


def test_a_transient_error_is_retried(pipeline_client, make_token, db, monkeypatch):
    calls: list[str] = []
    lock = threading.Lock()
    real = tasks.pipeline._normalize

    def flaky(session, batch_row, ctx):
        with lock:
            calls.append(ctx["batch_id"])
            first = len(calls) == 1
        if first:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        return real(session, batch_row, ctx)

    monkeypatch.setattr(tasks.pipeline, "_normalize", flaky)
    token = make_token("dev-1")
    bid = post(pipeline_client, token)["batch_id"]
    assert wait_processed(db, bid) == "processed"

    v = view(pipeline_client, token, bid)
    assert len(calls) == 2
    assert v["jobs"]["normalize"]["status"] == "ok"
    assert v["jobs"]["normalize"]["attempts"] == 2
    assert v["jobs"]["aggregate"]["attempts"] == v["jobs"]["detect_danger"]["attempts"] == 1
    assert v["last_error"] is None
    assert admin_alerts(db, bid) == []
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(NormalizedEvent)) == 3


# -- 3. the callback is idempotent ----------------------------------------------------------------------------


def test_the_callback_twice_changes_nothing(pipeline_client, make_token, db, celery_app):
    token = make_token("dev-1")
    bid = post(pipeline_client, token)["batch_id"]
    assert wait_processed(db, bid) == "processed"
    before = view(pipeline_client, token, bid)
    ctx = stored_context(celery_app, bid)
    results = AsyncResult(task_ids(ctx)["mark_batch_processed"], app=celery_app).args[0]

    for _ in range(2):
        redelivered = tasks.pipeline.mark_batch_processed.apply_async(args=(results, ctx))
        assert redelivered.get(timeout=15) is None  # None: nothing changed

    after = view(pipeline_client, token, bid)
    assert {k: v for k, v in after.items() if k != "correlation_id_of_request"} == \
        {k: v for k, v in before.items() if k != "correlation_id_of_request"}
    assert audit_steps(db, bid).count("completed") == 1


def test_complete_batch_twice(db, clean_db):
    outcome = persist_body(db, batch(three_events()))
    bid = outcome.batch.batch_id
    results = [{"job": "aggregate", "ok": True}, {"job": "normalize", "ok": True},
               {"job": "detect_danger", "ok": False, "error": "RuntimeError: x"}]
    with db.transaction() as s:
        assert complete_batch(s, "dev-1", bid, results, "c-1", False, attempt=0) == "processed_with_errors"
    with db.session() as s:
        first = stored_batch(s, bid)
    with db.transaction() as s:
        assert complete_batch(s, "dev-1", bid, results, "c-1", False, attempt=0) is None
    with db.session() as s:
        second = stored_batch(s, bid)
        completed = s.scalars(select(AuditRecord).where(AuditRecord.batch_id == bid,
                                                        AuditRecord.step == "completed")).all()
    assert (second.status, second.last_error) == ("processed_with_errors", "detect_danger: RuntimeError: x")
    assert (second.completed_at, second.updated_at) == (first.completed_at, first.updated_at)
    assert len(completed) == 1


# -- 4. the errback -------------------------------------------------------------------------------------------


def test_a_crashing_callback_marks_the_batch_failed(
        pipeline_client, make_token, db, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("callback crashed")

    monkeypatch.setattr(tasks.pipeline, "complete_batch", crash)
    # No retries of the callback here: its final failure is what triggers the errback.
    monkeypatch.setattr(tasks.pipeline.mark_batch_processed, "max_retries", 0)
    token = make_token("dev-1")
    bid = post(pipeline_client, token)["batch_id"]
    assert wait_processed(db, bid) == "failed"

    v = view(pipeline_client, token, bid)
    assert "callback crashed" in v["last_error"]
    assert v["completed_at"] is not None
    assert all(job["status"] == "ok" for job in v["jobs"].values())
    assert [a.kind for a in admin_alerts(db, bid)] == ["batch_failed"]
    assert "failed" in audit_steps(db, bid)


def test_the_errback_marks_a_pending_batch_failed_but_never_a_completed_one(
        pipeline_client, make_token, db, celery_app):
    errback = tasks.pipeline.mark_batch_failed
    token = make_token("dev-1")

    # A completed batch keeps its outcome.
    done = post(pipeline_client, token)["batch_id"]
    assert wait_processed(db, done) == "processed"
    before = view(pipeline_client, token, done)
    ctx = stored_context(celery_app, done)
    errback.apply_async(args=(None, "WorkerLostError: killed", None), kwargs={"ctx": ctx}).get(timeout=15)
    after = view(pipeline_client, token, done)
    assert (after["status"], after["completed_at"], after["last_error"]) == ("processed", before["completed_at"], None)
    assert admin_alerts(db, done) == []
    assert "failed" not in audit_steps(db, done)

    # A batch that never completed is marked failed, with an admin alert.
    pending = persist_body(db, batch(three_events()))
    pending_ctx = {**ctx, "batch_id": str(pending.batch.batch_id), "attempt": 0}  # its dispatch count
    errback.apply_async(args=(None, "WorkerLostError: killed", None), kwargs={"ctx": pending_ctx}).get(timeout=15)
    with db.session() as s:
        failed = stored_batch(s, pending.batch.batch_id)
        assert (failed.status, failed.last_error) == ("failed", "WorkerLostError: killed")
        assert failed.completed_at is not None
    assert [a.kind for a in admin_alerts(db, str(pending.batch.batch_id))] == ["batch_failed"]

    # ... and a second errback for it changes nothing more.
    errback.apply_async(args=(None, "again", None), kwargs={"ctx": pending_ctx}).get(timeout=15)
    assert len(admin_alerts(db, str(pending.batch.batch_id))) == 1


# -- 6. the sweeper -------------------------------------------------------------------------------------------


def dispatch_without_publishing(db, outbox_id: int) -> None:
    """What a publish whose messages Redis then lost leaves behind: batch `dispatched`, outbox `dispatched`."""
    with db.transaction() as s:
        record = claim(s, outbox_id)
        assert record is not None
        ctx = start_dispatch(s, record)
        finish_dispatch(s, record.id, ctx, task_ids(ctx))


@pytest.mark.usefixtures("celery_worker")
def test_the_sweeper_redispatches_stuck_batches(clean_db, celery_app, quiet_broker):
    """Nothing queued nor held by a worker: a batch dispatched a lease ago that has not started is lost; one
    dispatched a moment ago may still be on its way."""
    from tasks.maintenance import sweep_stuck_batches

    db = clean_db
    settings = Settings.from_env()
    stuck = persist_body(db, batch(three_events()))
    fresh = persist_body(db, batch(three_events()))
    for outcome in (stuck, fresh):
        dispatch_without_publishing(db, outcome.outbox_id)
    with db.transaction() as s:
        s.execute(text("UPDATE batches SET updated_at = now() - make_interval(secs => :age),"
                       " dispatched_at = now() - make_interval(secs => :age) WHERE batch_id = :id"),
                  {"age": settings.job_lease_seconds + 5, "id": stuck.batch.batch_id})

    # The beat task: redispatch_stuck, then the relay publishes the new outbox record.
    assert sweep_stuck_batches() == [str(stuck.batch.batch_id)]
    assert wait_processed(db, str(stuck.batch.batch_id)) == "processed"
    with db.session() as s:
        swept = stored_batch(s, stuck.batch.batch_id)
        untouched = stored_batch(s, fresh.batch.batch_id)
        assert swept.dispatch_count == 2
        assert (untouched.status, untouched.dispatch_count) == ("dispatched", 1)
        jobs = s.scalars(select(BatchJob).where(BatchJob.batch_id == stuck.batch.batch_id)).all()
        assert {j.job: (j.status, j.task_id) for j in jobs} == {
            job: ("ok", task_ids({"batch_id": str(stuck.batch.batch_id), "developer_id": "dev-1", "attempt": 2})[job])
            for job in JOBS}
        outbox = s.scalars(select(Outbox).where(Outbox.batch_id == fresh.batch.batch_id)).all()
        assert [o.status for o in outbox] == ["dispatched"]
        assert s.scalar(select(func.count()).select_from(Outbox).where(Outbox.status == "pending")) == 0
    assert "requeued" in audit_steps(db, str(stuck.batch.batch_id))
    assert "requeued" not in audit_steps(db, str(fresh.batch.batch_id))
    # Nothing is stuck any more; a second sweep and relay do nothing.
    assert sweep_stuck_batches() == []
    assert relay(db, celery_app) == {"due": 0, "published": 0}


@pytest.mark.usefixtures("celery_worker")
def test_the_sweeper_picks_up_a_batch_stuck_in_processing(clean_db, quiet_broker):
    from tasks.maintenance import sweep_stuck_batches

    db = clean_db
    settings = Settings.from_env()
    stuck = persist_body(db, batch(three_events()))
    dispatch_without_publishing(db, stuck.outbox_id)
    with db.transaction() as s:
        s.execute(text("UPDATE batches SET status = 'processing', processing_started_at = now(), "
                       "updated_at = now() - make_interval(secs => :age),"
                       " dispatched_at = now() - make_interval(secs => :age) WHERE batch_id = :id"),
                  {"age": settings.stuck_after_seconds + 5, "id": stuck.batch.batch_id})
    assert sweep_stuck_batches() == [str(stuck.batch.batch_id)]
    assert wait_processed(db, str(stuck.batch.batch_id)) == "processed"
    with db.session() as s:
        assert stored_batch(s, stuck.batch.batch_id).dispatch_count == 2


# -- 7. ids are per developer -----------------------------------------------------------------------------------


def test_two_developers_batches_with_the_same_ids_are_processed_separately(pipeline_client, make_token, db):
    """dev-2 posts dev-1's batch id and event ids first: both batches are stored and each runs its own chord."""
    tokens = {"dev-1": make_token("dev-1"), "dev-2": make_token("dev-2")}
    mine = three_events()
    theirs = [dict(e, payload={**e["payload"], "file": "src/b.py"}) if "file" in e["payload"] else dict(e)
              for e in mine]
    bid = str(uuid.uuid4())
    for developer, events in (("dev-2", theirs), ("dev-1", mine)):
        body = batch(events, developer_id=developer, batch_id=bid)
        r = pipeline_client.post("/api/workflow/events/orchestrate", json=body, headers=auth(tokens[developer]))
        assert r.status_code == 202, r.get_json()
        assert (r.get_json()["accepted"], r.get_json()["duplicate_event_ids"]) == (3, [])
    for developer in tokens:
        assert wait_processed(db, bid, developer_id=developer) == "processed"

    views = {d: view(pipeline_client, token, bid) for d, token in tokens.items()}
    task_ids_seen = set()
    for developer, v in views.items():
        assert (v["developer_id"], v["status"], v["accepted"], v["dispatch_count"]) == (developer, "processed", 3, 1)
        assert {name: job["status"] for name, job in v["jobs"].items()} == dict.fromkeys(JOBS, "ok")
        expected = task_ids({"batch_id": bid, "developer_id": developer, "attempt": 1})
        assert {name: job["task_id"] for name, job in v["jobs"].items()} == {j: expected[j] for j in JOBS}
        task_ids_seen |= {job["task_id"] for job in v["jobs"].values()}
    assert len(task_ids_seen) == 6
    with db.session() as s:
        normalized = s.execute(select(NormalizedEvent.developer_id, NormalizedEvent.event_id,
                                      NormalizedEvent.file_path)
                               .order_by(NormalizedEvent.developer_id, NormalizedEvent.seq)).all()
        slots = s.execute(select(MetricSlot.developer_id, func.sum(MetricSlot.events))
                          .group_by(MetricSlot.developer_id).order_by(MetricSlot.developer_id)).all()
        completed = s.execute(select(AuditRecord.details["developer_id"].astext)
                              .where(AuditRecord.batch_id == uuid.UUID(bid), AuditRecord.step == "completed")
                              .order_by(AuditRecord.details["developer_id"].astext)).scalars().all()
    assert [(d, str(e)) for d, e, _ in normalized] == [(d, ev["event_id"]) for d in tokens for ev in mine]
    assert [f for d, _, f in normalized if d == "dev-1"][:2] == ["src/a.py", "src/a.py"]
    assert [f for d, _, f in normalized if d == "dev-2"][:2] == ["src/b.py", "src/b.py"]
    assert [tuple(r) for r in slots] == [("dev-1", 3), ("dev-2", 3)]
    assert completed == ["dev-1", "dev-2"]
