from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from models.tables import BatchJob, MetricSlot, NormalizedEvent
from tests.support.factories import auth, batch, event, now
from tests.support.pipeline import wait_processed


def test_post_then_processed(pipeline_client, make_token, db):
    client = pipeline_client
    token = make_token("dev-1")
    t0 = now() - timedelta(minutes=30)
    events = [
        event("file.edit", t0, file="src/a.py", lines_added=3, lines_deleted=1, chars_typed=40),
        event("file.save", t0 + timedelta(seconds=60), file="src/a.py"),
        event("file.edit", t0 + timedelta(seconds=100), version="1.0", file="b.ts", lines_changed=7),
    ]
    body = batch(events)
    r = client.post("/api/workflow/events/orchestrate", json=body, headers=auth(token))
    assert r.status_code == 202, r.get_json()
    assert wait_processed(db, body["batch_id"]) == "processed"
    view = client.get(f"/api/workflow/batches/{body['batch_id']}", headers=auth(token)).get_json()
    assert view["status"] == "processed"
    assert set(view["jobs"]) == {"aggregate", "normalize", "detect_danger"}
    assert all(j["status"] == "ok" for j in view["jobs"].values())
    # Each job ran once: a routing mistake that binds every queue to every message shows up here.
    assert [j["attempts"] for j in view["jobs"].values()] == [1, 1, 1]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(NormalizedEvent)) == 3
        upcast = s.scalars(select(NormalizedEvent).where(NormalizedEvent.source_schema_version == "1.0")).one()
        assert upcast.payload["lines_added"] == 7 and upcast.payload["lines_deleted"] == 0
        assert upcast.language == "typescript"
        slots = s.scalars(select(MetricSlot)).all()
        assert sum(d.edits for d in slots) == 2
        assert sum(d.lines_added for d in slots) == 10
        assert sum(d.active_us for d in slots) == 100_000_000
        assert s.scalar(select(func.count()).select_from(BatchJob)) == 3
