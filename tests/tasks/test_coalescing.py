"""One run of a job covers the developer's other batches waiting for it (models/coalescing.py)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, text

from activity.danger import DangerThresholds
from activity.metrics import SLOT_COLUMNS, compute_slots, slot_floor
from models.aggregation import aggregate_batch
from models.danger_detection import detect_for_batch
from models.event_reader import developer_events
from models.tables import AlertNotification, BatchJob, MetricSlot
from tests.support.factories import batch, event, now
from tests.support.pipeline import persist_body, stored_batch


def in_flight(db, outcomes) -> None:
    with db.transaction() as s:
        for o in outcomes:
            s.execute(text("UPDATE batches SET status = 'dispatched' WHERE batch_id = :id"), {"id": o.batch.batch_id})


def test_the_first_run_covers_the_waiting_batches_and_they_find_nothing_left(clean_db):
    db = clean_db
    t = now() - timedelta(hours=2)
    outcomes = [persist_body(db, batch([event("file.save", t + timedelta(minutes=10 * i + m), file="a.py")
                                        for m in range(3)])) for i in range(4)]
    in_flight(db, outcomes)
    first, *rest = outcomes
    with db.transaction() as s:
        result = aggregate_batch(s, stored_batch(s, first.batch.batch_id), idle_timeout_seconds=300)
    assert result["covered"] == 3
    with db.transaction() as s:
        jobs = {j.batch_id: j for j in s.scalars(select(BatchJob).where(BatchJob.job == "aggregate"))}
        assert {j.covered_by for b, j in jobs.items()} == {first.batch.batch_id}
        assert len(jobs) == 3 and all(j.status == "ok" for j in jobs.values())
    for o in rest:
        with db.transaction() as s:
            assert aggregate_batch(s, stored_batch(s, o.batch.batch_id), idle_timeout_seconds=300) == {
                "slots": 0, "covered_by": str(first.batch.batch_id)}
    # A replay always does its own work.
    with db.transaction() as s:
        replayed = aggregate_batch(s, stored_batch(s, rest[0].batch.batch_id), idle_timeout_seconds=300,
                                   is_replay=True)
    assert "covered_by" not in replayed
    # Exactly what one pass over every stored event gives.
    with db.session() as s:
        events = developer_events(s, "dev-1")
        stored = {m.slot_start: {c: getattr(m, c) for c in SLOT_COLUMNS} for m in s.scalars(select(MetricSlot))}
    expected = compute_slots(events, since=slot_floor(t - timedelta(hours=1)),
                             until=slot_floor(now()) + timedelta(hours=1), idle_timeout_seconds=300)
    assert stored == {m.slot_start: {c: getattr(m, c) for c in SLOT_COLUMNS} for m in expected.metrics}


def test_detection_covers_waiting_batches_too(clean_db):
    db = clean_db
    t = now() - timedelta(minutes=40)
    outcomes = [persist_body(db, batch([event("build.result", t + timedelta(seconds=20 * (10 * i + k)), success=False)
                                        for k in range(10)])) for i in range(3)]
    in_flight(db, outcomes)
    with db.transaction() as s:
        out = detect_for_batch(s, stored_batch(s, outcomes[0].batch.batch_id), correlation_id="c",
                               thresholds=DangerThresholds(), freshness=timedelta(hours=24))
    assert out["covered"] == 2
    [notification] = out["notify"]  # one notification record for the run, written in its transaction
    with db.session() as s:
        record = s.get(AlertNotification, notification)
        assert [a["pattern"] for a in record.alerts] == ["excessive_errors"]
        assert record.batch_id == outcomes[0].batch.batch_id and record.status == "pending"
    with db.transaction() as s:
        again = detect_for_batch(s, stored_batch(s, outcomes[2].batch.batch_id), correlation_id="c",
                                 thresholds=DangerThresholds(), freshness=timedelta(hours=24))
    assert again == {"alerts": 0, "notify": [], "covered_by": str(outcomes[0].batch.batch_id)}


def test_a_covered_job_ends_in_its_first_transaction(pipeline_client, make_token, db):
    """Through the real worker: batches posted back to back are all processed, some jobs by another's run."""
    from tests.support.factories import auth
    from tests.support.pipeline import wait_processed

    token = make_token("dev-1")
    t = now() - timedelta(minutes=30)
    ids = []
    for i in range(6):
        body = batch([event("file.save", t + timedelta(seconds=30 * i + k), file="a.py") for k in range(5)])
        response = pipeline_client.post("/api/workflow/events/orchestrate", json=body, headers=auth(token))
        assert response.status_code == 202
        ids.append(body["batch_id"])
    assert [wait_processed(db, i) for i in ids] == ["processed"] * 6
    with db.session() as s:
        events = developer_events(s, "dev-1")
        stored = {m.slot_start: {c: getattr(m, c) for c in SLOT_COLUMNS} for m in s.scalars(select(MetricSlot))}
        jobs = s.scalars(select(BatchJob)).all()
    assert len(jobs) == 18 and all(j.status == "ok" for j in jobs)
    expected = compute_slots(events, since=slot_floor(t - timedelta(hours=1)),
                             until=slot_floor(now()) + timedelta(hours=1), idle_timeout_seconds=300)
    assert stored == {m.slot_start: {c: getattr(m, c) for c in SLOT_COLUMNS} for m in expected.metrics}
