"""Erasing a developer: DELETE /api/admin/developers/<id> and `flask --app app developers erase ID --confirm`."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from models.audit_chain import seal_pending, verify_chain
from models.erasure import developer_hash
from tests.support.factories import auth, batch, event, now
from tests.support.pipeline import wait_processed

# Every table that holds a developer's rows, and how to count them.
PER_DEVELOPER = ("raw_events", "normalized_events", "batches", "batch_jobs", "outbox", "metric_slots",
                 "activity_breakdowns", "alerts", "alert_notifications", "developer_settings", "api_tokens")


def _rows(db, developer_id: str) -> dict[str, int]:
    with db.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t} WHERE developer_id = :d"), {"d": developer_id})
                .scalar_one() for t in PER_DEVELOPER}


def _history(client, token: str, developer_id: str) -> None:
    t0 = now() - timedelta(minutes=40)
    # Enough to fill every derived table: edits (metrics, breakdowns) and a streak of failed builds (an alert).
    events = [event("file.edit", t0 + timedelta(seconds=20 * i), file="src/a.py", lines_added=1, lines_deleted=0)
              for i in range(10)]
    events += [event("build.result", t0 + timedelta(minutes=5, seconds=i), success=False) for i in range(25)]
    body = batch(events, developer_id=developer_id)
    assert client.post("/api/workflow/events/orchestrate", json=body, headers=auth(token)).status_code == 202
    assert wait_processed(client.application.extensions["devpulse.db"], body["batch_id"],
                          developer_id=developer_id) == "processed"
    assert client.put(f"/api/developers/{developer_id}/settings", json={"timezone": "Europe/Berlin"},
                      headers=auth(token)).status_code == 200


def test_erasing_one_developer_leaves_the_other_untouched(pipeline_client, make_token, db):
    client = pipeline_client
    tokens = {d: make_token(d) for d in ("dev-1", "dev-2")}
    for developer_id, token in tokens.items():
        _history(client, token, developer_id)
    admin = make_token(None, admin=True)
    before = {d: _rows(db, d) for d in tokens}
    assert all(n > 0 for t, n in before["dev-1"].items() if t not in ("outbox",)), before["dev-1"]
    metrics_before = client.get("/api/developers/dev-2/metrics?granularity=day", headers=auth(admin)).get_json()

    response = client.delete("/api/admin/developers/dev-1", headers=auth(admin))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["erased"] is True and body["developer_sha256"] == developer_hash("dev-1")
    assert body["deleted"]["raw_events"] == before["dev-1"]["raw_events"]

    assert _rows(db, "dev-1") == {t: 0 for t in PER_DEVELOPER}
    assert _rows(db, "dev-2") == before["dev-2"]
    assert client.get("/api/developers/dev-2/metrics?granularity=day", headers=auth(admin)).get_json() \
        == metrics_before

    # The erased developer's API: its token is gone, and for an admin the developer no longer exists.
    assert client.get("/api/developers/dev-1/metrics", headers=auth(tokens["dev-1"])).status_code == 401
    missing = client.get("/api/developers/dev-1/metrics", headers=auth(admin))
    assert missing.status_code == 404 and missing.get_json()["error"]["code"] == "developer_not_found"
    assert client.delete("/api/admin/developers/dev-1", headers=auth(admin)).status_code == 404

    # A new token for the same id starts from nothing.
    fresh = make_token("dev-1")
    assert client.get("/api/developers/dev-1/metrics?granularity=day", headers=auth(fresh)).get_json()["buckets"] \
        == []
    assert client.get("/api/developers/dev-1/alerts", headers=auth(fresh)).get_json()["alerts"] == []

    # The audit chain records the erasure without naming the developer, and still verifies.
    with db.engine.connect() as conn:
        details = conn.execute(text("SELECT details FROM audit_log WHERE step = 'developer_erased'")).scalar_one()
    assert details["developer_sha256"] == developer_hash("dev-1") and "dev-1" not in str(details)
    assert details["requested_by"].startswith("admin token")
    seal_pending(db, grace_seconds=0)
    with db.session() as s:
        assert verify_chain(s).ok


def test_raw_events_stay_append_only_outside_an_erasure(db, make_token, pipeline_client):
    _history(pipeline_client, make_token("dev-1"), "dev-1")
    for sql in ("DELETE FROM raw_events WHERE developer_id = 'dev-1'",
                "UPDATE raw_events SET type = 'x' WHERE developer_id = 'dev-1'"):
        with pytest.raises(Exception, match="append-only"), db.engine.begin() as conn:
            conn.execute(text(sql))
    # Inside another developer's erasure, this developer's rows are still refused.
    with pytest.raises(Exception, match="append-only"), db.engine.begin() as conn:
        conn.execute(text("SELECT set_config('devpulse.erasure', 'dev-2', true)"))
        conn.execute(text("DELETE FROM raw_events WHERE developer_id = 'dev-1'"))


def test_cli_erase_requires_confirm(app, make_token):
    make_token("dev-9")
    runner = app.test_cli_runner()
    refused = runner.invoke(args=["developers", "erase", "dev-9"])
    assert refused.exit_code == 2 and "--confirm" in refused.output
    done = runner.invoke(args=["developers", "erase", "dev-9", "--confirm"])
    assert done.exit_code == 0 and "api_tokens" in done.output
    again = runner.invoke(args=["developers", "erase", "dev-9", "--confirm"])
    assert again.exit_code == 1 and "nothing is stored" in again.output
