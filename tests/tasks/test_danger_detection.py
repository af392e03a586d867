"""Danger detection as a job of the real pipeline (in-process worker, real Redis and PostgreSQL),
`models.danger_detection.store_detections` at model level, and alert delivery through the pipeline
(SSE stream on a real HTTP server, signed webhook to a real local receiver)."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import func, select, text
from werkzeug.serving import make_server

from activity import danger
from activity.danger import DangerThresholds, Detection
from models.alerts import alert_channel, alert_document
from models.danger_detection import detect_for_batch, store_detections
from models.tables import AdminAlert, Alert, AuditRecord, Batch, BatchJob, MetricSlot, NormalizedEvent
from tests.support.factories import auth, batch, event, now
from tests.support.pipeline import stored_batch, wait_for, wait_processed
from tests.support.webhooks import Receiver

URL = "/api/workflow/events/orchestrate"
FRESH = timedelta(hours=24)

# One error event of each kind the rules count (build, test, terminal, diagnostics).
ERROR_KINDS: list[tuple[str, dict[str, Any]]] = [
    ("build.result", {"success": False, "duration_ms": 900}),
    ("test.result", {"passed": 10, "failed": 2}),
    ("terminal.command", {"exit_code": 1}),
    ("diagnostics.snapshot", {"errors": 3, "warnings": 0}),
]


# ---------------------------------------------------------------------------------------------------------- helpers


def error_events(start: datetime, count: int, step: timedelta = timedelta(seconds=20)) -> list[dict[str, Any]]:
    out = []
    for i in range(count):
        kind, payload = ERROR_KINDS[i % len(ERROR_KINDS)]
        out.append(event(kind, start + i * step, **payload))
    return out


def post(client, token: str, events: list[dict[str, Any]], developer_id: str = "dev-1") -> dict[str, Any]:
    body = batch(events, developer_id=developer_id)
    r = client.post(URL, json=body, headers=auth(token))
    assert r.status_code == 202, r.get_json()
    assert r.get_json()["accepted"] == len(events), r.get_json()
    return {**body, "correlation_id": r.get_json()["correlation_id"]}


def near(a: datetime, b: datetime) -> bool:
    """Stored times are corrected for clock skew (received_at - sent_at): within a second or two of the sent ones."""
    return abs(a - b) < timedelta(seconds=2)


def stored_alerts(db, developer_id: str = "dev-1") -> list[Alert]:
    with db.session() as s:
        return list(s.scalars(select(Alert).where(Alert.developer_id == developer_id)
                              .order_by(Alert.detected_at, Alert.pattern)))


def views(db, developer_id: str = "dev-1") -> list[dict[str, Any]]:
    return [alert_document(a) for a in stored_alerts(db, developer_id)]


def job(db, batch_id: str, name: str) -> BatchJob:
    with db.session() as s:
        return s.scalars(select(BatchJob).where(BatchJob.batch_id == uuid.UUID(batch_id), BatchJob.job == name)).one()


def get_batch(db, batch_id: str) -> Batch:
    with db.session() as s:
        return stored_batch(s, uuid.UUID(batch_id))


def admin_alerts(db, batch_id: str) -> list[AdminAlert]:
    with db.session() as s:
        return list(s.scalars(select(AdminAlert).where(AdminAlert.batch_id == uuid.UUID(batch_id))))


def replay_chord(db, batch_id: str) -> Any:
    """Publish the batch's whole chord again (what a replay or a redelivered message does) and wait for it."""
    from tasks.dispatch import build_chord

    b = get_batch(db, batch_id)
    ctx = {
        "batch_id": batch_id, "developer_id": b.developer_id, "correlation_id": b.correlation_id,
        "received_at": b.received_at.isoformat(), "event_count": b.accepted,
        "first_ts": b.first_ts.isoformat(), "last_ts": b.last_ts.isoformat(),
        "is_replay": True, "attempt": b.dispatch_count + 1,
    }
    from tasks.celery_app import app as celery_app

    return build_chord(celery_app, ctx).apply_async().get(timeout=30)


# ------------------------------------------------------------------------------------ detection in the pipeline


def test_errors_split_across_batches_one_alert_escalated_never_duplicated(pipeline_client, make_token, db):
    token = make_token("dev-1")
    t0 = now() - timedelta(minutes=20)

    first = post(pipeline_client, token, error_events(t0, 12))  # t0 .. t0+220 s
    assert wait_processed(db, first["batch_id"]) == "processed"
    assert stored_alerts(db) == []  # 12 errors: below the medium threshold of 20

    # 12 more within the same 15 minutes: only the stored events around the batch make 24.
    second = post(pipeline_client, token, error_events(t0 + timedelta(minutes=4), 12))  # .. t0+460 s
    assert wait_processed(db, second["batch_id"]) == "processed"
    [alert] = stored_alerts(db)
    assert (alert.pattern, alert.severity, alert.status, alert.stale) == ("excessive_errors", "medium", "open", False)
    assert alert.details["peak_error_count"] == 24
    assert near(alert.window_start, t0) and near(alert.window_end, t0 + timedelta(seconds=460))
    assert str(alert.batch_id) == second["batch_id"]
    assert alert.correlation_id == second["correlation_id"]
    assert "24 errors" in alert.recommendation

    # A later batch extends the same episode to 40 errors within 13 minutes: same alert, now high.
    third = post(pipeline_client, token, error_events(t0 + timedelta(minutes=8), 16))  # .. t0+780 s
    assert wait_processed(db, third["batch_id"]) == "processed"
    [raised] = stored_alerts(db)
    assert raised.alert_id == alert.alert_id
    assert raised.severity == "high" and raised.details["peak_error_count"] == 40
    assert raised.window_start == alert.window_start and near(raised.window_end, t0 + timedelta(seconds=780))
    assert str(raised.batch_id) == third["batch_id"] and raised.correlation_id == third["correlation_id"]
    assert raised.detected_at == alert.detected_at and raised.updated_at > alert.updated_at

    # Replaying the whole chord adds nothing and changes nothing (not even updated_at).
    before = views(db)
    assert replay_chord(db, third["batch_id"]) is None  # the callback saw nothing to change
    assert job(db, third["batch_id"], "detect_danger").attempts == 2  # the job really ran again
    assert job(db, third["batch_id"], "detect_danger").status == "ok"
    assert views(db) == before

    # Calling the job's function again directly, for every batch, writes nothing either.
    for body in (first, second, third):
        with db.transaction() as s:
            out = detect_for_batch(s, stored_batch(s, uuid.UUID(body["batch_id"])), correlation_id="direct-replay",
                                   thresholds=DangerThresholds(), freshness=timedelta(hours=24))
        assert out["alerts"] == 0 and out["notify"] == [] and "error" not in out
    assert views(db) == before


def test_backfilled_batch_merging_two_episodes_gives_what_one_pass_gives(pipeline_client, make_token, db):
    token, other = make_token("dev-1"), make_token("dev-2")
    t = now() - timedelta(minutes=70)
    early = error_events(t, 20, step=timedelta(seconds=15))  # t .. t+4:45
    late = error_events(t + timedelta(minutes=30), 20, step=timedelta(seconds=15))  # t+30 .. t+34:45
    gap = error_events(t + timedelta(minutes=5), 50, step=timedelta(seconds=30))  # t+5 .. t+29:30

    for events in (early, late):
        assert wait_processed(db, post(pipeline_client, token, events)["batch_id"]) == "processed"
    first, second = sorted((a for a in stored_alerts(db) if a.pattern == "excessive_errors"),
                           key=lambda a: a.window_start)
    assert near(second.window_start, t + timedelta(minutes=30))  # two separate episodes so far
    assert wait_processed(db, post(pipeline_client, token, gap)["batch_id"]) == "processed"

    # The same events in one in-order batch, for another developer.
    again = [{**e, "event_id": str(uuid.uuid4())} for e in early + gap + late]  # event ids are global
    assert wait_processed(db, post(pipeline_client, other, again, "dev-2")["batch_id"]) == "processed"
    [merged] = [a for a in stored_alerts(db) if a.pattern == "excessive_errors" and a.status != "withdrawn"]
    [single] = [a for a in stored_alerts(db, "dev-2") if a.pattern == "excessive_errors"]
    assert merged.alert_id == first.alert_id
    # The later episode's alert is kept, withdrawn (merged into the first), never deleted.
    [withdrawn] = [a for a in stored_alerts(db) if a.status == "withdrawn"]
    assert withdrawn.alert_id == second.alert_id and withdrawn.version == second.version + 1
    assert merged.severity == single.severity == "high"
    # Each batch is shifted by its own clock-skew correction (< 1 s): a boundary error may count or not.
    assert abs(merged.details["peak_error_count"] - single.details["peak_error_count"]) <= 1
    assert near(merged.window_start, single.window_start) and near(merged.window_end, single.window_end)
    assert near(merged.window_end, t + timedelta(minutes=34, seconds=45))


def test_two_high_patterns_at_once_are_critical(pipeline_client, make_token, db):
    token = make_token("dev-1")
    t = now()
    events = [
        event("debug.start", t - timedelta(minutes=140), debug_session_id="dbg-7", debug_type="python"),
        # Breakpoints every 4 minutes: the developer is active throughout (no idle gap ends the session).
        *[event("debug.breakpoint_hit", t - timedelta(minutes=m), debug_session_id="dbg-7")
          for m in range(136, 10, -4)],
        # 40 errors within 9 min 45 s while the debug session runs: excessive_errors high.
        *error_events(t - timedelta(minutes=40), 40, step=timedelta(seconds=15)),
        event("debug.stop", t - timedelta(minutes=10), debug_session_id="dbg-7"),  # 130 min: high
    ]
    body = post(pipeline_client, token, events)
    assert wait_processed(db, body["batch_id"]) == "processed"
    found = {a.pattern: a for a in stored_alerts(db)}
    assert {p: a.severity for p, a in found.items()} == {
        "excessive_errors": "critical", "extended_debugging": "critical"}
    assert found["excessive_errors"].details["critical_with"] == ["extended_debugging"]
    assert found["extended_debugging"].details["critical_with"] == ["excessive_errors"]
    assert all(a.details["escalated_from"] == "high" for a in found.values())
    assert found["extended_debugging"].details["duration_minutes"] == 130
    assert found["extended_debugging"].episode_key == "dbg-7"
    assert "red flag" in found["excessive_errors"].recommendation

    # Replaying does not escalate twice nor add anything.
    before = views(db)
    replay_chord(db, body["batch_id"])
    assert views(db) == before


def test_stale_episode_is_stored_stale_and_not_pushed(pipeline_client, make_token, db, redis_url):
    import redis

    token = make_token("dev-1")
    r = redis.Redis.from_url(redis_url)
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(alert_channel("dev-1"))
    try:
        old = post(pipeline_client, token, error_events(now() - timedelta(days=3), 24))
        assert wait_processed(db, old["batch_id"]) == "processed"
        [stale] = stored_alerts(db)
        assert stale.stale is True and stale.severity == "medium"
        assert pubsub.get_message(timeout=1.0) is None  # nothing announced

        fresh = post(pipeline_client, token, error_events(now() - timedelta(minutes=15), 24))
        assert wait_processed(db, fresh["batch_id"]) == "processed"
        message = pubsub.get_message(timeout=5.0)
        assert message is not None
        pushed = json.loads(message["data"])
        assert pushed["batch_id"] == fresh["batch_id"] and pushed["stale"] is False
        assert pushed["alert_id"] != str(stale.alert_id)
        assert pubsub.get_message(timeout=0.5) is None
    finally:
        pubsub.close()
        r.close()
    assert len(stored_alerts(db)) == 2


# ---------------------------------------------------------------------------------------------- failure isolation


def test_failing_rule_keeps_batch_and_other_rules(pipeline_client, make_token, db, monkeypatch):
    def broken(*args: Any, **kwargs: Any) -> list[Detection]:
        raise RuntimeError("rule exploded")

    monkeypatch.setattr(danger, "detect_extended_debugging", broken)
    token = make_token("dev-1")
    t = now()
    events = [
        event("debug.start", t - timedelta(minutes=80), debug_session_id="dbg-1"),
        *error_events(t - timedelta(minutes=30), 24),
        event("debug.stop", t - timedelta(minutes=5), debug_session_id="dbg-1"),  # 75 min: would be medium
    ]
    body = post(pipeline_client, token, events)
    assert wait_processed(db, body["batch_id"]) == "processed_with_errors"

    detect = job(db, body["batch_id"], "detect_danger")
    assert detect.status == "failed"
    assert "rule extended_debugging failed: RuntimeError: rule exploded" in detect.error
    assert job(db, body["batch_id"], "aggregate").status == "ok"
    assert job(db, body["batch_id"], "normalize").status == "ok"
    b = get_batch(db, body["batch_id"])
    assert b.completed_at is not None and "detect_danger" in b.last_error and "rule exploded" in b.last_error
    [admin] = admin_alerts(db, body["batch_id"])
    assert admin.kind == "job_failed" and admin.context["job"] == "detect_danger"
    assert "rule exploded" in admin.message and admin.correlation_id == body["correlation_id"]
    # The failure record names the events involved and the processing state, and which rule failed.
    with db.session() as s:
        [failed] = s.scalars(select(AuditRecord).where(AuditRecord.step == "job_failed")).all()
    assert failed.details["event_ids"] == [e["event_id"] for e in events]
    assert failed.details["event_count"] == len(events)
    assert failed.details["failed_rules"] == {"extended_debugging": "RuntimeError: rule exploded"}
    assert failed.details["state"]["work_committed"] is True and failed.details["state"]["attempts"] == 1
    assert failed.details["state"]["batch_status"] == "processing"
    assert admin.context["event_count"] == len(events)
    # The other rules' alerts are stored; only the broken rule's are missing.
    assert {a.pattern: a.severity for a in stored_alerts(db)} == {"excessive_errors": "medium"}


def test_failing_delivery_keeps_batch_and_alerts(pipeline_client, make_token, db, monkeypatch):
    import tasks.pipeline

    def broken_push(alerts: list[dict[str, Any]]) -> None:
        raise ConnectionError("pub/sub unreachable")

    monkeypatch.setattr(tasks.pipeline, "push_alerts", broken_push)
    token = make_token("dev-1")
    body = post(pipeline_client, token, error_events(now() - timedelta(minutes=20), 24))
    assert wait_processed(db, body["batch_id"]) == "processed_with_errors"
    detect = job(db, body["batch_id"], "detect_danger")
    assert detect.status == "failed" and "delivery failed: ConnectionError: pub/sub unreachable" in detect.error
    [admin] = admin_alerts(db, body["batch_id"])
    assert admin.kind == "job_failed" and "pub/sub unreachable" in admin.message
    [alert] = stored_alerts(db)  # committed before the delivery was attempted
    assert (alert.pattern, alert.severity, str(alert.batch_id)) == ("excessive_errors", "medium", body["batch_id"])


def test_ingest_request_does_no_detection(client, make_token, clean_db, celery_worker, app):
    from tasks.dispatch import relay

    token = make_token("dev-1")
    body = post(client, token, error_events(now() - timedelta(minutes=20), 24))  # plain client: no publish
    with clean_db.session() as s:
        assert stored_batch(s, uuid.UUID(body["batch_id"])).status == "persisted"
        assert s.scalar(select(func.count()).select_from(Alert)) == 0
        assert s.scalar(select(func.count()).select_from(NormalizedEvent)) == 0
        assert s.scalar(select(func.count()).select_from(MetricSlot)) == 0
    # The same batch does raise an alert once the pipeline (here: the outbox relay) runs it. The relay leaves a
    # fresh record to the web for PUBLISH_GRACE; this one's web never published it, so make it due.
    with clean_db.transaction() as s:
        s.execute(text("UPDATE outbox SET next_attempt_at = now() - interval '1 second'"))
    assert relay(clean_db, app.extensions["celery"])["published"] == 1
    assert wait_processed(clean_db, body["batch_id"]) == "processed"
    assert [a.pattern for a in stored_alerts(clean_db)] == ["excessive_errors"]


# ------------------------------------------------------------------------------ store_detections (model level)


def detection(pattern: str = "excessive_errors", severity: str = "medium", start: datetime | None = None,
              minutes: float = 10, key: str | None = None, **details: Any) -> Detection:
    start = start or datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    return Detection(pattern, severity, start, start + timedelta(minutes=minutes), key or start.isoformat(),
                     {"peak_error_count": 20, **details}, f"advice {pattern} {severity}")


@pytest.fixture
def dev() -> str:
    return f"dev-{uuid.uuid4().hex[:8]}"


def _store(session, dev: str, detections: list[Detection], at: datetime, batch_id: uuid.UUID | None = None,
           correlation_id: str = "corr", scope: tuple[datetime, datetime] | None = None,
           ) -> tuple[int, list[Alert]]:
    return store_detections(session, dev, detections, batch_id=batch_id or uuid.uuid4(),
                            correlation_id=correlation_id, now=at, freshness=FRESH, scope=scope)


def _rows(session, dev: str) -> list[dict[str, Any]]:
    session.expire_all()
    return [alert_document(a) for a in session.scalars(select(Alert).where(Alert.developer_id == dev)
                                                   .order_by(Alert.pattern, Alert.window_start))]


def test_store_inserts_once_and_a_replay_writes_nothing(session, dev):
    d = detection()
    at = d.window_end + timedelta(minutes=1)
    bid = uuid.uuid4()
    written, push = _store(session, dev, [d], at, bid, "c-1")
    assert written == 1 and len(push) == 1
    [row] = _rows(session, dev)
    assert row["batch_id"] == str(bid) and row["correlation_id"] == "c-1" and row["status"] == "open"
    assert row["stale"] is False and row["detected_at"] == row["updated_at"] == at.isoformat()
    assert row["recommendation"] == d.recommendation and row["deliveries"] == []

    # The same detection again (a retry, a replay, a redelivered message), even much later.
    assert _store(session, dev, [d], at + timedelta(hours=1), uuid.uuid4(), "c-2") == (0, [])
    assert _rows(session, dev) == [row]


def test_store_extension_raises_severity_and_reopens(session, dev):
    from models.alerts import acknowledge

    d = detection(severity="medium")
    at = d.window_end
    _, [alert] = _store(session, dev, [d], at)
    acknowledge(session, dev, alert.alert_id, at + timedelta(minutes=1))
    session.flush()

    # Same episode (same key), grown and now high: the one alert is updated and pushed again.
    grown = dataclasses.replace(d, severity="high", window_end=d.window_end + timedelta(minutes=5),
                                details={"peak_error_count": 41}, recommendation="advice high")
    later = at + timedelta(minutes=5)
    written, push = _store(session, dev, [grown], later, correlation_id="c-2")
    assert written == 1 and [a.alert_id for a in push] == [alert.alert_id]
    [row] = _rows(session, dev)
    assert row["alert_id"] == str(alert.alert_id)
    assert (row["severity"], row["status"], row["acknowledged_at"]) == ("high", "open", None)
    assert row["details"] == {"peak_error_count": 41} and row["recommendation"] == "advice high"
    assert row["window_end"] == grown.window_end.isoformat() and row["updated_at"] == later.isoformat()
    assert row["detected_at"] == at.isoformat() and row["correlation_id"] == "c-2"

    # Alerts are derived data: when the stored events show less, the severity follows down (no push).
    lower = dataclasses.replace(grown, severity="medium", window_end=grown.window_end + timedelta(minutes=2),
                                details={"peak_error_count": 25}, recommendation="advice medium")
    written, push = _store(session, dev, [lower], later + timedelta(minutes=2))
    assert written == 1 and push == []
    [row] = _rows(session, dev)
    assert (row["severity"], row["recommendation"], row["details"]) == (
        "medium", "advice medium", {"peak_error_count": 25})
    assert row["window_end"] == lower.window_end.isoformat() and row["version"] == 3


def test_store_moved_episode_start_updates_the_same_alert(session, dev):
    d = detection(minutes=10)
    _, [alert] = _store(session, dev, [d], d.window_end)
    # A backfilled event moves the episode's start (so its key) two minutes earlier.
    moved_start = d.window_start - timedelta(minutes=2)
    moved = dataclasses.replace(d, window_start=moved_start, episode_key=moved_start.isoformat())
    written, push = _store(session, dev, [moved], d.window_end + timedelta(minutes=1))
    assert (written, push) == (1, [])
    [row] = _rows(session, dev)
    assert row["alert_id"] == str(alert.alert_id) and row["window_start"] == moved_start.isoformat()
    # ...and the moved detection is then a no-op on replay.
    assert _store(session, dev, [moved], d.window_end + timedelta(hours=2)) == (0, [])


def test_store_merged_episodes_leave_one_alert(session, dev):
    """A backfilled batch closes the gap between two episodes: the rule now reports one episode under the
    earlier key, so the later episode's alert is superseded (one alert per developer, pattern, window)."""
    early = detection(start=datetime(2026, 3, 2, 9, 0, tzinfo=UTC), minutes=5)
    late = detection(start=datetime(2026, 3, 2, 9, 30, tzinfo=UTC), minutes=5)
    _, [kept, superseded] = _store(session, dev, [early, late], late.window_end)
    merged = dataclasses.replace(early, window_end=late.window_end, severity="high",
                                 details={"peak_error_count": 45})
    scope = (early.window_start - timedelta(hours=1), late.window_end + timedelta(hours=1))
    written, push = _store(session, dev, [merged], late.window_end + timedelta(minutes=1), scope=scope)
    assert written == 2 and [a.alert_id for a in push] == [kept.alert_id]
    row, gone = _rows(session, dev)
    assert row["alert_id"] == str(kept.alert_id) and row["severity"] == "high"
    assert gone["alert_id"] == str(superseded.alert_id) and gone["status"] == "withdrawn"  # kept, not deleted
    assert (row["window_start"], row["window_end"]) == (early.window_start.isoformat(), late.window_end.isoformat())
    # Episodes of patterns that may legitimately overlap (debug sessions) are never merged away.
    a = detection("extended_debugging", "medium", start=early.window_start, minutes=70, key="dbg-a")
    b = detection("extended_debugging", "medium", start=early.window_start, minutes=65, key="dbg-b")
    assert _store(session, dev, [a, b], a.window_end)[0] == 2
    assert _store(session, dev, [dataclasses.replace(a, window_end=a.window_end + timedelta(minutes=5))],
                  a.window_end)[0] == 1
    assert len(_rows(session, dev)) == 4  # the merged, the withdrawn and both debug sessions
    # Replaying the merged detection changes nothing.
    assert _store(session, dev, [merged], late.window_end + timedelta(hours=1)) == (0, [])


def test_store_separate_episodes_and_patterns_are_separate_alerts(session, dev):
    a = detection(start=datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    b = detection(start=datetime(2026, 3, 2, 11, 0, tzinfo=UTC))
    c = detection("extended_debugging", "high", start=datetime(2026, 3, 2, 9, 0, tzinfo=UTC), key="dbg-1")
    written, push = _store(session, dev, [a, b, c], datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    assert written == 3 and len(push) == 3
    assert len(_rows(session, dev)) == 3


def test_store_stale_episode_is_flagged_and_not_pushed(session, dev):
    d = detection()
    written, push = _store(session, dev, [d], d.window_end + FRESH + timedelta(seconds=1))
    assert written == 1 and push == []
    [row] = _rows(session, dev)
    assert row["stale"] is True
    # Exactly at the freshness limit it is still fresh.
    other = detection(start=d.window_start + timedelta(days=1))
    _, push = _store(session, dev, [other], other.window_end + FRESH)
    assert [a.stale for a in push] == [False]


def test_store_nothing_to_store(session, dev):
    assert _store(session, dev, [], datetime.now(UTC)) == (0, [])
    assert _rows(session, dev) == []


# ------------------------------------------------------------------------------------ delivery through the pipeline


@pytest.fixture
def live_server(app, celery_worker) -> Iterator[str]:
    """The app on a real threaded HTTP server (the publish-after-response hook runs as in production)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="devpulse-live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


class SseReader(threading.Thread):
    """Reads an SSE response line by line, stamping each `data:` with its arrival time."""

    def __init__(self, port: int, path: str, token: str) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
        self.conn.request("GET", path, headers={**auth(token), "Accept": "text/event-stream"})
        self.response = self.conn.getresponse()
        self.connected = threading.Event()
        self.events: list[tuple[datetime, str, str, dict[str, Any]]] = []  # (received, event, id, data)

    def run(self) -> None:
        name, ident = "message", ""
        try:
            while line := self.response.readline():
                text = line.decode("utf-8").rstrip("\r\n")
                if text == ": connected":
                    self.connected.set()
                elif text.startswith("event: "):
                    name = text[len("event: "):]
                elif text.startswith("id: "):
                    ident = text[len("id: "):]
                elif text.startswith("data: "):
                    self.events.append((datetime.now(UTC), name, ident, json.loads(text[len("data: "):])))
                    name, ident = "message", ""
        finally:
            self.conn.close()


def test_sse_pushes_fresh_alert_within_a_second_and_never_a_stale_one(live_server, make_token, db):
    token = make_token("dev-1")
    port = int(live_server.rsplit(":", 1)[1])
    reader = SseReader(port, "/api/developers/dev-1/alerts/stream?max_seconds=6", token)
    assert reader.response.status == 200
    assert reader.response.getheader("Content-Type").startswith("text/event-stream")
    started = time.monotonic()
    reader.start()
    assert reader.connected.wait(5)

    def send(events: list[dict[str, Any]]) -> str:
        body = batch(events)
        r = requests.post(live_server + URL, json=body, headers=auth(token), timeout=10)
        assert r.status_code == 202, r.text
        return body["batch_id"]

    stale_batch = send(error_events(now() - timedelta(days=3), 24))
    assert wait_processed(db, stale_batch) == "processed"
    fresh_batch = send(error_events(now() - timedelta(minutes=20), 24))
    assert wait_processed(db, fresh_batch) == "processed"
    assert time.monotonic() - started < 5.5, "the stream must still be open when the fresh alert is pushed"
    reader.join(timeout=10)  # the stream ends by itself after max_seconds
    assert not reader.is_alive()

    by_batch = {str(a.batch_id): a for a in stored_alerts(db)}
    stale, fresh = by_batch[stale_batch], by_batch[fresh_batch]
    assert stale.stale is True and fresh.stale is False
    # Exactly one push: the fresh alert. The stale one (processed first) never arrived.
    assert [name for _, name, _, _ in reader.events] == ["alert", "end"]  # `end`: max_seconds reached
    assert reader.events[0][2].endswith(f"-{fresh.alert_id}")  # its stream position: <txid>-<alert id>
    assert reader.events[1][3] == {"reason": "max_seconds"}
    received, _, _, data = reader.events[0]
    assert data == {**alert_document(fresh), "deliveries": []}
    latency = (received - fresh.detected_at).total_seconds()
    assert 0 <= latency < 2.0, f"alert arrived {latency:.3f}s after detection"
    completed = get_batch(db, fresh_batch).completed_at
    assert abs((received - completed).total_seconds()) < 2.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def webhook(app, receiver) -> Iterator[str]:
    """Point the workers' settings at the receiver (after create_app, which configures them), then restore."""
    from core.breakers import breakers
    from tasks.celery_app import app as celery

    original = celery.conf.devpulse_settings
    secret = "s3cret-" + uuid.uuid4().hex
    celery.conf.devpulse_settings = dataclasses.replace(original, alert_webhook_url=receiver.url,
                                                        alert_webhook_secret=secret)
    breakers.reset("webhook")
    yield secret
    celery.conf.devpulse_settings = original
    breakers.reset("webhook")


def test_webhook_receives_signed_fresh_alert_only(pipeline_client, make_token, db, receiver, webhook):
    secret = webhook
    token = make_token("dev-1")
    stale_body = post(pipeline_client, token, error_events(now() - timedelta(days=3), 24))
    assert wait_processed(db, stale_body["batch_id"]) == "processed"
    body = post(pipeline_client, token, error_events(now() - timedelta(minutes=20), 24))
    assert wait_processed(db, body["batch_id"]) == "processed"

    by_batch = {str(a.batch_id): a for a in stored_alerts(db)}
    fresh_id = by_batch[body["batch_id"]].alert_id
    [entry] = wait_for(lambda: next(a for a in stored_alerts(db) if a.alert_id == fresh_id).deliveries, 10)
    assert entry["channel"] == "webhook" and entry["attempt"] == 1
    assert entry["outcome"] == "delivered" and entry["status"] == 200
    assert datetime.fromisoformat(entry["at"]) >= by_batch[body["batch_id"]].detected_at

    time.sleep(0.3)  # give a (wrong) second delivery the chance to show up
    [(headers, raw)] = receiver.hits
    assert headers["Content-Type"] == "application/json"
    # t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">, t within a few seconds of now.
    t, v1 = (part.split("=", 1)[1] for part in headers["X-Devpulse-Signature"].split(","))
    assert abs(int(t) - time.time()) < 30
    expected = hmac.new(secret.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)
    assert v1 != hmac.new(b"other", f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    payload = json.loads(raw)
    assert payload["type"] == "devpulse.alerts" and payload["developer_id"] == "dev-1"
    [item] = payload["alerts"]
    assert item["idempotency_key"] == f"{fresh_id}:1"
    assert item["alert"]["alert_id"] == str(fresh_id)
    assert item["alert"]["batch_id"] == body["batch_id"] and item["alert"]["stale"] is False
    assert item["alert"]["severity"] == "medium" and item["alert"]["recommendation"]
    # The stale alert was never sent.
    assert by_batch[stale_body["batch_id"]].stale is True and by_batch[stale_body["batch_id"]].deliveries == []


def test_an_alert_withdrawn_by_a_replay_is_audited_as_a_replay(session, dev):
    d = detection()
    _store(session, dev, [d], d.window_end)
    scope = (d.window_start - timedelta(hours=1), d.window_end + timedelta(hours=1))
    written, _ = store_detections(session, dev, [], batch_id=uuid.uuid4(), correlation_id="c-replay",
                                  now=d.window_end + timedelta(minutes=1), freshness=FRESH, scope=scope,
                                  is_replay=True)
    assert written == 1
    [record] = session.scalars(select(AuditRecord).where(AuditRecord.step == "alert_withdrawn",
                                                         AuditRecord.correlation_id == "c-replay")).all()
    assert record.is_replay is True
