"""The quarantine backstop (models/quarantine.py, tasks/pipeline.py): an event that a job cannot process is
recorded and skipped; its batch and the developer's later batches complete; an operator releases it later."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import models.normalization
from models.tables import AdminAlert, AuditRecord, MetricSlot, NormalizedEvent, QuarantinedEvent
from tests.support.factories import auth, batch, event, now
from tests.support.pipeline import wait_for, wait_processed

POISON = "poison.py"


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Normalization raises on one kind of event: an unforeseen value no ingest rule caught."""
    real = models.normalization.normalize

    def normalize(ev: Any) -> Any:
        if ev.payload.get("file") == POISON:
            raise ValueError("cannot normalize this file")
        return real(ev)

    monkeypatch.setattr(models.normalization, "normalize", normalize)


def post(client, token: str, events: list[dict[str, Any]]) -> str:
    response = client.post("/api/workflow/events/orchestrate", json=batch(events), headers=auth(token))
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["batch_id"])


def view(client, token: str, batch_id: str) -> dict[str, Any]:
    return dict(client.get(f"/api/workflow/batches/{batch_id}", headers=auth(token)).get_json())


@pytest.mark.usefixtures("poisoned")
def test_a_poison_event_is_quarantined_and_nothing_else_is_lost(pipeline_client, make_token, db):
    token = make_token("dev-1")
    t = now() - timedelta(minutes=30)
    bad = event("file.save", t + timedelta(seconds=10), file=POISON)
    bid = post(pipeline_client, token, [event("file.save", t, file="a.py"), bad,
                                        event("file.save", t + timedelta(seconds=20), file="b.py")])
    assert wait_processed(db, bid) == "processed"
    v = view(pipeline_client, token, bid)
    assert v["quarantined"] == 1 and v["jobs"]["normalize"]["status"] == "ok"
    with db.session() as s:
        [q] = s.scalars(select(QuarantinedEvent)).all()
        assert (str(q.event_id), q.job, q.released_at) == (bad["event_id"], "normalize", None)
        assert "cannot normalize this file" in q.error
        assert s.scalars(select(AdminAlert).where(AdminAlert.kind == "events_quarantined")).one()
        trail = s.scalars(select(AuditRecord).where(AuditRecord.step == "events_quarantined")).one()
        assert trail.details["event_ids"] == [bad["event_id"]]
        # Skipped by the job that could not process it; the jobs that could keep it.
        assert len(s.scalars(select(NormalizedEvent)).all()) == 2
        assert sum(m.events for m in s.scalars(select(MetricSlot)).all()) == 3

    # The developer's next batch is unaffected (no retry of the poison, no failure).
    later = post(pipeline_client, token, [event("file.save", t + timedelta(seconds=40), file="c.py")])
    assert wait_processed(db, later) == "processed"
    assert view(pipeline_client, token, later)["quarantined"] == 0


def test_requeue_quarantined_releases_and_replays_after_a_fix(pipeline_client, make_token, db, monkeypatch):
    from tasks import cli

    token = make_token("dev-1")
    real = models.normalization.normalize
    monkeypatch.setattr(models.normalization, "normalize",
                        lambda ev: (_ for _ in ()).throw(ValueError("bug")) if ev.payload.get("file") == POISON
                        else real(ev))
    t = now() - timedelta(minutes=30)
    bid = post(pipeline_client, token, [event("file.save", t, file=POISON), event("file.save", t, file="a.py")])
    assert wait_processed(db, bid) == "processed"
    assert view(pipeline_client, token, bid)["quarantined"] == 1

    monkeypatch.setattr(models.normalization, "normalize", real)  # the fix is deployed
    result = CliRunner().invoke(cli.requeue, ["--quarantined"], obj=None, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "1 batch(es) requeued" in result.output
    wait_for(lambda: view(pipeline_client, token, bid)["replay_count"] == 1
             and view(pipeline_client, token, bid)["status"] == "processed")
    assert view(pipeline_client, token, bid)["quarantined"] == 0
    with db.session() as s:
        assert len(s.scalars(select(NormalizedEvent)).all()) == 2
        assert s.scalars(select(QuarantinedEvent)).one().released_at is not None


def test_a_failure_that_is_not_an_events_fault_is_processable(pipeline_client, make_token, db, monkeypatch):
    import tasks.pipeline

    # The job fails whatever its events are (a broken write, say): nothing to pin on an event.
    monkeypatch.setattr(tasks.pipeline, "_normalize", lambda *a: (_ for _ in ()).throw(RuntimeError("broken")))
    token = make_token("dev-1")
    bid = post(pipeline_client, token, [event("file.save", now() - timedelta(minutes=5))])
    assert wait_processed(db, bid) == "processed_with_errors"
    with db.session() as s:
        assert s.scalars(select(QuarantinedEvent)).all() == []
    assert uuid.UUID(bid)
