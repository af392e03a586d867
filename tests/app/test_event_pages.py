"""GET /api/workflow/batches/<id>/events and /api/alerts/<id>/events: stored events, in order, paginated."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from activity.danger import DangerThresholds
from models.danger_detection import detect_for_batch
from models.tables import AlertNotification, Batch
from tests.support.factories import auth, batch, event, now


def post(client, token: str, events: list[dict[str, Any]], developer: str = "dev-1") -> str:
    response = client.post("/api/workflow/events/orchestrate", json=batch(events, developer_id=developer),
                           headers=auth(token))
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["batch_id"])


def pages(client, token: str, url: str, limit: int) -> list[dict[str, Any]]:
    out, cursor = [], None
    while True:
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        body = client.get(url, query_string=params, headers=auth(token)).get_json()
        out += body["events"]
        cursor = body["next_cursor"]
        if cursor is None:
            return out


def test_a_batch_events_come_in_batch_order(client, make_token):
    token = make_token("dev-1")
    t = now() - timedelta(minutes=10)
    # Out of time order, and three at the same instant: batch order (seq) is what is returned.
    sent = [event("file.save", t + timedelta(seconds=s), file=f"{i}.py") for i, s in enumerate([5, 0, 0, 0, 9, 1])]
    bid = post(client, token, sent)
    got = pages(client, token, f"/api/workflow/batches/{bid}/events", limit=4)
    assert [e["event_id"] for e in got] == [e["event_id"] for e in sent]
    assert [e["seq"] for e in got] == list(range(6))
    assert got[0]["event"] == sent[0] and got[0]["batch_id"] == bid and got[0]["schema_version"] == "1.1"
    # Not visible to another developer; bad paging parameters name themselves.
    assert client.get(f"/api/workflow/batches/{bid}/events", headers=auth(make_token("dev-2"))).status_code == 404
    for params, field in (({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"cursor": "!!"}, "cursor")):
        bad = client.get(f"/api/workflow/batches/{bid}/events", query_string=params, headers=auth(token))
        assert bad.status_code == 400 and bad.get_json()["error"]["details"][0]["field"] == field


def test_an_alert_links_to_the_events_behind_it(client, make_token, clean_db):
    token = make_token("dev-1")
    t = now() - timedelta(minutes=30)
    errors = [event("build.result", t + timedelta(seconds=20 * i), success=False) for i in range(22)]
    noise = [event("file.save", t + timedelta(seconds=20 * i + 5), file="a.py") for i in range(5)]
    bid = post(client, token, errors + noise)
    with clean_db.transaction() as s:
        stored = s.scalars(select(Batch).where(Batch.batch_id == bid)).one()
        out = detect_for_batch(s, stored, correlation_id="c", thresholds=DangerThresholds(),
                               freshness=timedelta(hours=24))
    [notification] = out["notify"]
    with clean_db.session() as s:
        [alert] = s.get(AlertNotification, notification).alerts
    assert alert["pattern"] == "excessive_errors"
    got = pages(client, token, f"/api/alerts/{alert['alert_id']}/events", limit=5)
    assert [e["event_id"] for e in got] == [e["event_id"] for e in errors]  # the errors, not the saves
    assert client.get(f"/api/alerts/{alert['alert_id']}/events", headers=auth(make_token("dev-2"))).status_code == 404
    assert client.get("/api/alerts/not-a-uuid/events", headers=auth(token)).status_code == 400
