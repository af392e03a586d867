"""The developer's alerts API (list by priority, filters, acknowledge), on the real PostgreSQL and Redis.

The SSE stream is in tests/app/test_alert_stream.py.

The signed webhook's retries and circuit breaker are in tests/tasks/test_alert_delivery.py; the end-to-end
pushes (a batch through the pipeline to the stream and to the webhook) live in
tests/tasks/test_danger_detection.py, next to the in-process worker they need.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.support.alerts import base_time, seed
from tests.support.factories import auth, iso

# ---------------------------------------------------------------------------------------------------------- helpers


def listed(client, token: str, developer_id: str = "dev-1", **params: str) -> list[dict[str, Any]]:
    r = client.get(f"/api/developers/{developer_id}/alerts", query_string=params, headers=auth(token))
    assert r.status_code == 200, r.get_json()
    assert r.get_json()["developer_id"] == developer_id
    return r.get_json()["alerts"]


# ------------------------------------------------------------------------------------------------------------ list


def test_alerts_listed_highest_severity_first_then_newest(client, make_token, clean_db):
    token = make_token("dev-1")
    t = base_time()
    # Stored in an order that is neither the priority nor the time order.
    low_newest = seed(clean_db, "dev-1", "late_night_work", "low", t - timedelta(hours=1))
    medium_old = seed(clean_db, "dev-1", "excessive_errors", "medium", t - timedelta(hours=3))
    high_old = seed(clean_db, "dev-1", "extended_debugging", "high", t - timedelta(hours=5), key="dbg-1")
    medium_new = seed(clean_db, "dev-1", "no_break", "medium", t - timedelta(hours=2))
    critical_oldest = seed(clean_db, "dev-1", "high_ai_dependency", "critical", t - timedelta(hours=6))
    high_new = seed(clean_db, "dev-1", "excessive_errors", "high", t - timedelta(minutes=30))
    seed(clean_db, "dev-2", "excessive_errors", "critical", t)  # someone else's

    alerts = listed(client, token)
    assert [a["alert_id"] for a in alerts] == [
        a["alert_id"] for a in (critical_oldest, high_new, high_old, medium_new, medium_old, low_newest)]
    assert all(a["developer_id"] == "dev-1" for a in alerts)
    first = alerts[0]
    assert first == critical_oldest
    assert set(first) >= {"alert_id", "developer_id", "pattern", "severity", "window_start", "window_end", "details",
                          "recommendation", "batch_id", "correlation_id", "detected_at", "status", "stale"}


def test_alerts_filtered_by_status_and_since(client, make_token, clean_db):
    token = make_token("dev-1")
    t = base_time()
    old = seed(clean_db, "dev-1", "excessive_errors", "high", t - timedelta(hours=3))
    new = seed(clean_db, "dev-1", "no_break", "medium", t - timedelta(hours=1))
    r = client.post(f"/api/developers/dev-1/alerts/{old['alert_id']}/ack", headers=auth(token))
    assert r.status_code == 200

    assert [a["alert_id"] for a in listed(client, token, status="open")] == [new["alert_id"]]
    assert [a["alert_id"] for a in listed(client, token, status="acknowledged")] == [old["alert_id"]]
    assert len(listed(client, token)) == 2

    since = t - timedelta(hours=2)
    assert [a["alert_id"] for a in listed(client, token, since=iso(since))] == [new["alert_id"]]
    # Any offset is accepted and means the same instant.
    plus_two = since.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert [a["alert_id"] for a in listed(client, token, since=plus_two)] == [new["alert_id"]]
    assert listed(client, token, since=iso(t + timedelta(minutes=5))) == []
    assert listed(client, token, status="open", since=iso(t - timedelta(hours=4))) == [new]  # both at once
    assert listed(client, token, status="acknowledged", since=iso(since)) == []


@pytest.mark.parametrize(("params", "field"), [
    ({"status": "closed"}, "status"),
    ({"since": "yesterday"}, "since"),
    ({"since": "2026-03-02T09:00:00"}, "since"),  # no offset: ambiguous
])
def test_alerts_bad_filters_are_400(client, make_token, clean_db, params, field):
    token = make_token("dev-1")
    r = client.get("/api/developers/dev-1/alerts", query_string=params, headers=auth(token))
    assert r.status_code == 400, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "invalid_parameter" and error["details"][0]["field"] == field


def test_alerts_require_the_developers_token(client, make_token, clean_db):
    seed(clean_db, "dev-1", "excessive_errors", "medium", base_time())
    other = make_token("dev-2")
    assert client.get("/api/developers/dev-1/alerts").status_code == 401
    assert client.get("/api/developers/dev-1/alerts", headers=auth("not-a-token")).status_code == 401
    r = client.get("/api/developers/dev-1/alerts", headers=auth(other))
    assert r.status_code == 403 and "dev-1" not in json.dumps(r.get_json().get("alerts", []))
    assert listed(client, other, "dev-2") == []


# ------------------------------------------------------------------------------------------------------------- ack


def test_ack_sets_acknowledged_once(client, make_token, clean_db):
    token = make_token("dev-1")
    alert = seed(clean_db, "dev-1", "excessive_errors", "medium", base_time())
    before = datetime.now(UTC)
    r = client.post(f"/api/developers/dev-1/alerts/{alert['alert_id']}/ack", headers=auth(token))
    assert r.status_code == 200, r.get_json()
    acked = r.get_json()
    assert acked["alert_id"] == alert["alert_id"] and acked["status"] == "acknowledged"
    assert datetime.fromisoformat(acked["acknowledged_at"]) >= before - timedelta(seconds=1)
    assert {k: v for k, v in acked.items() if k not in ("status", "acknowledged_at")} == {
        k: v for k, v in alert.items() if k not in ("status", "acknowledged_at")}
    [stored] = listed(client, token)
    assert stored == acked

    again = client.post(f"/api/developers/dev-1/alerts/{alert['alert_id']}/ack", headers=auth(token))
    assert again.status_code == 200 and again.get_json() == acked  # idempotent: same acknowledged_at


def test_ack_errors(client, make_token, clean_db):
    token, other = make_token("dev-1"), make_token("dev-2")
    alert = seed(clean_db, "dev-1", "excessive_errors", "medium", base_time())
    url = f"/api/developers/dev-1/alerts/{alert['alert_id']}/ack"

    r = client.post(f"/api/developers/dev-1/alerts/{uuid.uuid4()}/ack", headers=auth(token))
    assert r.status_code == 404 and "alert_not_found" in json.dumps(r.get_json())
    r = client.post("/api/developers/dev-1/alerts/not-a-uuid/ack", headers=auth(token))
    assert r.status_code == 400 and "invalid_alert_id" in json.dumps(r.get_json())
    assert client.post(url).status_code == 401
    r = client.post(url, headers=auth(other))
    assert r.status_code == 403 and "forbidden_developer" in json.dumps(r.get_json())
    # Another developer cannot reach the alert through their own path either.
    r = client.post(f"/api/developers/dev-2/alerts/{alert['alert_id']}/ack", headers=auth(other))
    assert r.status_code == 404
    assert listed(client, token)[0]["status"] == "open"
