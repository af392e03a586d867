"""Alerts are derived data: later events correct them, down as well as up, through the real pipeline."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from models.tables import Alert, AuditRecord
from tests.support.factories import auth, batch, event, now
from tests.support.pipeline import wait_processed


def post(client, token: str, events: list[dict[str, Any]]) -> str:
    response = client.post("/api/workflow/events/orchestrate", json=batch(events), headers=auth(token))
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["batch_id"])


def alerts(db) -> list[Alert]:
    with db.session() as s:
        return list(s.scalars(select(Alert).order_by(Alert.detected_at)))


def test_a_late_debug_stop_corrects_and_then_withdraws_the_alert(pipeline_client, make_token, db):
    token = make_token("dev-1")
    start = now() - timedelta(hours=3)
    hits = [event("debug.breakpoint_hit", start + timedelta(minutes=m), debug_session_id="s1")
            for m in range(4, 130, 4)]
    first = post(pipeline_client, token, [event("debug.start", start, debug_session_id="s1"), *hits])
    assert wait_processed(db, first) == "processed"
    [alert] = alerts(db)
    assert (alert.pattern, alert.severity, alert.details["still_open"], alert.version) == (
        "extended_debugging", "high", True, 1)
    assert "has been running for 2 h 8 min" in alert.recommendation

    # The stop arrives late: the session lasted 95 minutes. Figures, text and severity follow the truth.
    second = post(pipeline_client, token, [event("debug.stop", start + timedelta(minutes=95),
                                                 debug_session_id="s1")])
    assert wait_processed(db, second) == "processed"
    [alert] = alerts(db)
    # (Each batch's clock-skew correction moves its events by well under a second.)
    assert (alert.severity, alert.details["still_open"]) == ("medium", False)
    assert abs(alert.details["duration_minutes"] - 95) < 0.1
    assert "lasted 1 h 3" in alert.recommendation and alert.version == 2  # 1 h 34 or 35 min (skew)
    assert abs(alert.window_end - (start + timedelta(minutes=95))) < timedelta(seconds=2)

    # An earlier stop makes the session 40 minutes: below the threshold, the alert is withdrawn, not deleted.
    third = post(pipeline_client, token, [event("debug.stop", start + timedelta(minutes=40), debug_session_id="s1")])
    assert wait_processed(db, third) == "processed"
    [alert] = alerts(db)
    assert (alert.status, alert.version) == ("withdrawn", 3)
    listed = pipeline_client.get("/api/developers/dev-1/alerts", headers=auth(token)).get_json()["alerts"]
    assert listed == []
    withdrawn = pipeline_client.get("/api/developers/dev-1/alerts?status=withdrawn", headers=auth(token)).get_json()
    assert [a["alert_id"] for a in withdrawn["alerts"]] == [str(alert.alert_id)]
    with db.session() as s:
        [record] = s.scalars(select(AuditRecord).where(AuditRecord.step == "alert_withdrawn")).all()
        assert record.details["alert_id"] == str(alert.alert_id) and record.details["reason"] == "below_threshold"
