"""Event types a newer 1.x minor adds (issue 18, gap 5): stored unprocessed, skipped by every job, processed by a
replay once the catalog knows them; and a replay says so on every record and log line (gap 3)."""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import timedelta

from sqlalchemy import func, select

import models.event_reader
import models.quarantine
from activity.catalog import KNOWN_EVENT_TYPES
from core import logging as json_logging
from models.operations import replay
from models.tables import AuditRecord, MetricSlot, NormalizedEvent, QuarantinedEvent
from tasks.dispatch import dispatch_record
from tests.support.factories import auth, batch, event, now
from tests.support.pipeline import wait_for, wait_processed

NEW_TYPE = "refactor.applied"


def _learn(monkeypatch, event_type: str) -> None:
    """What a release whose catalog knows `event_type` changes for the jobs' reads."""
    known = KNOWN_EVENT_TYPES | {event_type}
    sql = " AND r.type IN ({})".format(", ".join(f"'{t}'" for t in sorted(known)))
    monkeypatch.setattr(models.event_reader, "PROCESSABLE",
                        models.event_reader.PROCESSABLE.replace(models.event_reader.KNOWN_TYPE, sql))
    monkeypatch.setattr(models.event_reader, "KNOWN_TYPE", sql)
    monkeypatch.setattr(models.quarantine, "KNOWN_EVENT_TYPES", known)


def test_an_unknown_type_is_skipped_by_the_jobs_and_processed_by_a_replay_once_known(
        pipeline_client, make_token, db, celery_app, monkeypatch):
    token = make_token("dev-1")
    t = now()
    known = event("file.save", t - timedelta(minutes=3), version="1.2")
    unknown = event(NEW_TYPE, t - timedelta(minutes=2), version="1.2", file="src/app.py")
    body = batch([known, unknown])
    r = pipeline_client.post("/api/workflow/events/orchestrate", json=body, headers=auth(token))
    assert r.status_code == 202, r.get_json()
    assert (r.get_json()["accepted"], r.get_json()["stored_unprocessed"]) == (2, 1)
    # Skipped, not failed: the batch completes cleanly and nothing is quarantined.
    assert wait_processed(db, body["batch_id"]) == "processed"
    with db.session() as s:
        assert [str(e) for e in s.scalars(select(NormalizedEvent.event_id))] == [known["event_id"]]
        assert s.scalar(select(func.sum(MetricSlot.events))) == 1
        assert s.scalar(select(func.count()).select_from(QuarantinedEvent)) == 0

    _learn(monkeypatch, NEW_TYPE)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_logging.JsonFormatter())
    canvas = logging.getLogger("devpulse.canvas")
    saved = canvas.level
    canvas.addHandler(handler)
    canvas.setLevel(logging.INFO)
    try:
        [row] = replay(db, lambda outbox_id: dispatch_record(db, celery_app, outbox_id),
                       batch_id=uuid.UUID(body["batch_id"]))
        assert row.action == "replayed"

        def replayed() -> bool:
            with db.session() as s:
                return s.scalar(select(func.count()).select_from(NormalizedEvent)) == 2
        wait_for(replayed)
    finally:
        canvas.removeHandler(handler)
        canvas.setLevel(saved)
    assert wait_processed(db, body["batch_id"]) == "processed"
    wait_for(lambda: _metric_events(db) == 2)
    # The replay is marked on every record it wrote and on its dispatched line.
    with db.session() as s:
        records = s.execute(select(AuditRecord.step, AuditRecord.is_replay)
                            .where(AuditRecord.step.in_(("dispatched", "job_started", "job_finished")))
                            .order_by(AuditRecord.id)).all()
    first_run, replay_run = records[:7], records[7:]
    assert {is_replay for _, is_replay in first_run} == {False}
    assert replay_run and {is_replay for _, is_replay in replay_run} == {True}
    dispatched = [json.loads(line) for line in stream.getvalue().splitlines()
                  if json.loads(line)["event"] == "dispatched"]
    assert [(d["is_replay"], d["batch_id"]) for d in dispatched] == [(True, body["batch_id"])]


def _metric_events(db) -> int:
    with db.session() as s:
        return int(s.scalar(select(func.sum(MetricSlot.events))) or 0)
