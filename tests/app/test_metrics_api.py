"""GET /api/developers/<id>/metrics and /breakdown (app/metrics_api.py), and the settings that shape them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from models.aggregation import aggregate_batch
from models.tables import DeveloperSettings
from tests.support.factories import auth, batch, event, iso
from tests.support.pipeline import persist_body, stored_batch

DAY = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)


def store(db, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        outcome = persist_body(db, body)
        with db.transaction() as s:
            aggregate_batch(s, stored_batch(s, outcome.batch.batch_id), idle_timeout_seconds=300)


@pytest.fixture
def stored(client, clean_db) -> dict[str, Any]:
    """Two hours of dev-1's activity on one day, one event the next day, and dev-2's activity; aggregated."""
    store(clean_db, [
        batch([event("file.edit", DAY + timedelta(hours=9), file="a.py", lines_added=4, lines_deleted=1),
               event("file.save", DAY + timedelta(hours=9, seconds=90), file="a.py"),
               event("build.result", DAY + timedelta(hours=10, minutes=5), success=False)]),
        batch([event("git.commit", DAY + timedelta(days=1, hours=8))]),
        batch([event("file.save", DAY + timedelta(hours=9), file="z.py")], developer_id="dev-2"),
    ])
    return {"db": clean_db}


def get(client, token: str, developer: str = "dev-1", what: str = "metrics", **params: str):
    return client.get(f"/api/developers/{developer}/{what}", query_string=params, headers=auth(token))


def test_own_metrics_by_hour_day_and_week(client, make_token, stored):
    token = make_token("dev-1")
    hourly = get(client, token)
    assert hourly.status_code == 200, hourly.get_json()
    body = hourly.get_json()
    assert (body["developer_id"], body["granularity"], body["timezone"], body["from"], body["to"]) == (
        "dev-1", "hour", "UTC", None, None)
    assert [b["bucket_start"] for b in body["buckets"]] == [
        (DAY + timedelta(hours=9)).isoformat(), (DAY + timedelta(hours=10)).isoformat(),
        (DAY + timedelta(days=1, hours=8)).isoformat()]
    nine = body["buckets"][0]
    assert (nine["events"], nine["edits"], nine["saves"], nine["lines_added"]) == (2, 1, 1, 4)
    assert nine["active_seconds"] == 90.0 and nine["ai_share"] is None

    daily = get(client, token, granularity="day").get_json()
    assert [(b["bucket_start"], b["events"], b["build_failures"], b["commits"]) for b in daily["buckets"]] == [
        (DAY.isoformat(), 3, 1, 0), ((DAY + timedelta(days=1)).isoformat(), 1, 0, 1)]
    weekly = get(client, token, granularity="week").get_json()
    assert sum(b["events"] for b in weekly["buckets"]) == 4
    for b in weekly["buckets"]:
        start = datetime.fromisoformat(b["bucket_start"])
        assert (start.weekday(), start.hour, start.minute) == (0, 0, 0)  # ISO weeks start on Monday


def test_days_are_the_developers_local_days(client, make_token, clean_db):
    token = make_token("dev-1")
    # 22:30 and 23:30 UTC are 00:30 and 01:30 the next day in Berlin in summer (UTC+2), 23:30/00:30 in winter.
    summer = datetime(datetime.now(UTC).year, 7, 1, 22, 30, tzinfo=UTC)
    if summer > datetime.now(UTC) - timedelta(days=1) or summer < datetime.now(UTC) - timedelta(days=29):
        summer = (datetime.now(UTC) - timedelta(days=3)).replace(hour=22, minute=30, second=0, microsecond=0)
    store(clean_db, [batch([event("file.save", summer, file="a.py"),
                            event("file.save", summer + timedelta(hours=1), file="a.py")])])
    utc_days = get(client, token, granularity="day").get_json()["buckets"]
    assert [b["events"] for b in utc_days] == [2]
    put = client.put("/api/developers/dev-1/settings", json={"timezone": "Pacific/Kiritimati"}, headers=auth(token))
    assert put.status_code == 200, put.get_json()
    local_days = get(client, token, granularity="day").get_json()
    assert local_days["timezone"] == "Pacific/Kiritimati"
    zone = ZoneInfo("Pacific/Kiritimati")  # UTC+14: 22:30 and 23:30 UTC are 12:30 and 13:30 the next day
    [day] = local_days["buckets"]
    start = datetime.fromisoformat(day["bucket_start"])
    assert start.utcoffset() == timedelta(hours=14) and (start.hour, start.minute) == (0, 0)
    assert start.date() == summer.astimezone(zone).date() and day["events"] == 2
    # A plain date in `from`/`to` is local midnight in the developer's zone.
    local_date = summer.astimezone(zone).date()
    same = get(client, token, granularity="day", **{"from": local_date.isoformat()}).get_json()
    assert datetime.fromisoformat(same["from"]) == datetime.combine(local_date, datetime.min.time(), zone)
    assert len(same["buckets"]) == 1
    later = get(client, token, granularity="day", **{"from": (local_date + timedelta(days=1)).isoformat()})
    assert later.get_json()["buckets"] == []


def test_breakdown_by_language_and_project(client, make_token, clean_db):
    token = make_token("dev-1")
    t = DAY + timedelta(hours=9)
    first = {**event("file.save", t, file="a.py"), "project": "web"}  # schema 1.1's top-level project
    store(clean_db, [batch([first, event("file.save", t + timedelta(seconds=60), file="b.go"),
                            event("file.save", t + timedelta(seconds=90), file="b.go")])])
    languages = get(client, token, what="breakdown", by="language").get_json()
    [day] = languages["days"]
    assert day["day_start"] == DAY.isoformat() and day["total_seconds"] == 90.0
    assert day["items"] == [{"name": "python", "active_seconds": 60.0}, {"name": "go", "active_seconds": 30.0}]
    [pday] = get(client, token, what="breakdown", by="project").get_json()["days"]
    assert pday["items"] == [{"name": "web", "active_seconds": 60.0}, {"name": "unknown", "active_seconds": 30.0}]
    bad = get(client, token, what="breakdown", by="branch")
    assert bad.status_code == 400 and bad.get_json()["error"]["details"][0]["field"] == "by"


def test_from_is_inclusive_and_to_exclusive(client, make_token, stored):
    token = make_token("dev-1")
    body = get(client, token, **{"from": iso(DAY + timedelta(hours=10)), "to": iso(DAY + timedelta(days=1, hours=8))})
    assert body.status_code == 200
    assert [b["bucket_start"] for b in body.get_json()["buckets"]] == [(DAY + timedelta(hours=10)).isoformat()]
    # An offset other than Z is understood (and is the same instant).
    local = (DAY + timedelta(hours=10)).astimezone(timezone(timedelta(hours=2)))
    same = get(client, token, granularity="day", **{"from": local.isoformat()}).get_json()
    assert [b["bucket_start"] for b in same["buckets"]] == [(DAY + timedelta(days=1)).isoformat()]
    assert datetime.fromisoformat(same["from"]) == DAY + timedelta(hours=10)


def test_admin_may_read_any_developer_and_others_may_not(client, make_token, stored):
    admin = make_token(None, admin=True)
    as_admin = get(client, admin, "dev-2")
    assert as_admin.status_code == 200
    assert [b["events"] for b in as_admin.get_json()["buckets"]] == [1]

    other = get(client, make_token("dev-2"), "dev-1")
    assert other.status_code == 403
    error = other.get_json()["error"]
    assert error["code"] == "forbidden_developer"
    assert error["details"][0]["field"] == "developer_id"
    assert "buckets" not in other.get_json()

    assert client.get("/api/developers/dev-1/metrics").status_code == 401


@pytest.mark.parametrize(("params", "field", "hint"), [
    ({"granularity": "month"}, "granularity", "week"),
    ({"granularity": ""}, "granularity", "hour"),
    ({"from": "yesterday"}, "from", "date"),
    ({"from": "2026-02-30"}, "from", "date"),
    ({"to": "2026-01-01T00:00:00"}, "to", "offset"),  # no offset
    ({"to": "2026-13-01T00:00:00Z"}, "to", "RFC 3339"),
    ({"from": "2026-01-01T10:00:00 02:00"}, "from", "%2B"),  # a '+' that arrived as a space
    ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from", "after"),
])
def test_bad_parameters_are_400_naming_the_field(client, make_token, stored, params, field, hint):
    response = get(client, make_token("dev-1"), **params)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter"
    assert [d["field"] for d in error["details"]] == [field]
    assert field in error["message"] and hint in error["message"]


def test_settings_are_validated_and_a_change_schedules_a_recompute(client, make_token, stored):
    token = make_token("dev-1")
    default = client.get("/api/developers/dev-1/settings", headers=auth(token)).get_json()
    assert default == {"developer_id": "dev-1", "timezone": "UTC", "idle_timeout_seconds": 300,
                       "recompute": {"pending": False, "progress": 1.0}}
    for body, field in (({"timezone": "Mars/Olympus"}, "timezone"),
                        ({"idle_timeout_seconds": 59}, "idle_timeout_seconds"),
                        ({"idle_timeout_seconds": 3601}, "idle_timeout_seconds"),
                        ({"idle_timeout_seconds": "600"}, "idle_timeout_seconds")):
        bad = client.put("/api/developers/dev-1/settings", json=body, headers=auth(token))
        assert bad.status_code == 400, bad.get_json()
        assert [d["field"] for d in bad.get_json()["error"]["details"]] == [field]
    changed = client.put("/api/developers/dev-1/settings", json={"idle_timeout_seconds": 600}, headers=auth(token))
    assert changed.status_code == 200
    view = changed.get_json()
    assert view["idle_timeout_seconds"] == 600 and view["recompute"]["pending"] is True
    assert view["recompute"]["progress"] == 0.0
    assert client.put("/api/developers/dev-2/settings", json={"timezone": "UTC"},
                      headers=auth(token)).status_code == 403
    with stored["db"].session() as s:
        assert s.get(DeveloperSettings, "dev-1").recompute_from is not None
