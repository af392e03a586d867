"""Background recompute after a settings change (models/recompute.py, tasks/maintenance.py)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import select

from models.aggregation import aggregate_batch
from models.tables import Alert, Batch, DeveloperSettings, MetricSlot
from tests.support.factories import auth, batch, event, now
from tests.support.pipeline import persist_body


def store(db, events):
    outcome = persist_body(db, batch(events))
    with db.transaction() as s:
        aggregate_batch(s, s.scalars(select(Batch).where(Batch.batch_id == outcome.batch.batch_id)).one(),
                        idle_timeout_seconds=300)


def active_seconds(db) -> float:
    with db.session() as s:
        return sum(m.active_us for m in s.scalars(select(MetricSlot)).all()) / 1e6


def test_a_longer_idle_timeout_recomputes_history_in_chunks(client, make_token, clean_db, celery_app):
    from tasks.maintenance import recompute_developers

    token = make_token("dev-1")
    t = now() - timedelta(days=3)
    # Gaps of 8 minutes on three different days: idle with 300 s, active with 600 s.
    for day in range(3):
        base = t + timedelta(days=day)
        store(clean_db, [event("file.save", base, file="a.py"), event("file.save", base + timedelta(minutes=8),
                                                                     file="a.py")])
    assert active_seconds(clean_db) == 0
    put = client.put("/api/developers/dev-1/settings", json={"idle_timeout_seconds": 600}, headers=auth(token))
    assert put.get_json()["recompute"]["pending"] is True

    done = recompute_developers(max_chunks=2)  # bounded work per run: two days of history
    assert len(done) == 2
    progress = client.get("/api/developers/dev-1/settings", headers=auth(token)).get_json()["recompute"]
    assert progress["pending"] is True and 0 < progress["progress"] < 1
    while recompute_developers(max_chunks=2):
        pass
    assert client.get("/api/developers/dev-1/settings", headers=auth(token)).get_json()["recompute"] == {
        "pending": False, "progress": 1.0}
    assert active_seconds(clean_db) == 3 * 8 * 60
    # Idempotent: recomputing again changes nothing.
    with clean_db.transaction() as s:
        s.get(DeveloperSettings, "dev-1").recompute_from = None
    from models.recompute import request_recompute

    with clean_db.transaction() as s:
        request_recompute(s, "dev-1")
    while recompute_developers():
        pass
    assert active_seconds(clean_db) == 3 * 8 * 60


def test_alerts_found_by_a_recompute_are_stored_stale_and_not_pushed(client, make_token, clean_db, celery_app):
    from tasks.maintenance import recompute_developers

    token = make_token("dev-1")
    # Yesterday 10:00-13:16 in Tokyo, whatever the time of the run: a run relative to now crossed into Tokyo's
    # night at some hours of the day and found late-night work too.
    start = datetime.combine(now().date() - timedelta(days=1), time(1, 0), tzinfo=UTC)
    # A 3 h 16 min run without a break (a no_break episode), stored without detection; a time-zone change
    # re-derives the alerts of the whole history, and what it finds for the past is stored stale.
    events = [event("file.save", start + timedelta(minutes=4 * i), file="a.py") for i in range(50)]
    store(clean_db, events)
    client.put("/api/developers/dev-1/settings", json={"timezone": "Asia/Tokyo"}, headers=auth(token))
    while recompute_developers():
        pass
    with clean_db.session() as s:
        alerts = s.scalars(select(Alert)).all()
    assert [(a.pattern, a.stale, a.batch_id) for a in alerts] == [("no_break", True, None)]
