"""GET /api/developers/<id>/metrics (app/metrics_api.py) over rows written by the aggregation job's function."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from activity.metrics import compute_metrics
from models.aggregation import aggregate_batch
from models.event_reader import developer_events
from models.tables import Batch
from tests.factories import auth, batch, event, iso
from tests.tasks.conftest import persist_body

DAY = (datetime.now(UTC) - timedelta(days=2)).replace(hour=0, minute=0, second=0, microsecond=0)


@pytest.fixture
def stored(client, clean_db) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """Two hours of dev-1's activity on one day, one event the next day, and dev-2's activity; aggregated."""
    db = clean_db
    bodies = [
        batch([event("file.edit", DAY + timedelta(hours=9), file="a.py", lines_added=4, lines_deleted=1),
               event("file.save", DAY + timedelta(hours=9, seconds=90), file="a.py"),
               event("build.result", DAY + timedelta(hours=10, minutes=5), success=False)]),
        batch([event("git.commit", DAY + timedelta(days=1, hours=8))]),
        batch([event("file.save", DAY + timedelta(hours=9), file="z.py")], developer_id="dev-2"),
    ]
    for body in bodies:
        outcome = persist_body(db, body)
        with db.transaction() as s:
            aggregate_batch(s, s.get(Batch, outcome.batch.batch_id), 300)
    return {"db": db}


def get(client, token: str, developer: str = "dev-1", **params: str):  # type: ignore[no-untyped-def]
    return client.get(f"/api/developers/{developer}/metrics", query_string=params, headers=auth(token))


def expected(db, developer: str, granularity: str) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    with db.session() as s:
        events = developer_events(s, developer)
    return [{"bucket_start": b.bucket_start.isoformat(), **b.as_dict()}
            for b in compute_metrics(events, idle_timeout_seconds=300) if b.granularity == granularity]


def test_own_metrics_by_hour_and_day(client, make_token, stored):  # type: ignore[no-untyped-def]
    token = make_token("dev-1")
    hourly = get(client, token)
    assert hourly.status_code == 200, hourly.get_json()
    body = hourly.get_json()
    assert (body["developer_id"], body["granularity"], body["from"], body["to"]) == ("dev-1", "hour", None, None)
    assert body["buckets"] == expected(stored["db"], "dev-1", "hour")
    assert [b["bucket_start"] for b in body["buckets"]] == [
        (DAY + timedelta(hours=9)).isoformat(), (DAY + timedelta(hours=10)).isoformat(),
        (DAY + timedelta(days=1, hours=8)).isoformat()]
    nine = body["buckets"][0]
    assert (nine["events"], nine["edits"], nine["saves"], nine["lines_added"]) == (2, 1, 1, 4)
    assert nine["active_seconds"] == 90.0

    daily = get(client, token, granularity="day").get_json()
    assert daily["buckets"] == expected(stored["db"], "dev-1", "day")
    assert [(b["bucket_start"], b["events"], b["build_failures"], b["commits"]) for b in daily["buckets"]] == [
        (DAY.isoformat(), 3, 1, 0), ((DAY + timedelta(days=1)).isoformat(), 1, 0, 1)]


def test_from_is_inclusive_and_to_exclusive(client, make_token, stored):  # type: ignore[no-untyped-def]
    token = make_token("dev-1")
    body = get(client, token, **{"from": iso(DAY + timedelta(hours=10)), "to": iso(DAY + timedelta(days=1, hours=8))})
    assert body.status_code == 200
    assert [b["bucket_start"] for b in body.get_json()["buckets"]] == [(DAY + timedelta(hours=10)).isoformat()]
    # An offset other than Z is understood (and is the same instant).
    local = (DAY + timedelta(hours=10)).astimezone(timezone(timedelta(hours=2)))
    same = get(client, token, granularity="day", **{"from": local.isoformat()}).get_json()
    assert [b["bucket_start"] for b in same["buckets"]] == [(DAY + timedelta(days=1)).isoformat()]
    assert datetime.fromisoformat(same["from"]) == DAY + timedelta(hours=10)


def test_admin_may_read_any_developer_and_others_may_not(client, make_token, stored):  # type: ignore[no-untyped-def]
    admin = make_token(None, admin=True)
    as_admin = get(client, admin, "dev-2")
    assert as_admin.status_code == 200
    assert as_admin.get_json()["buckets"] == expected(stored["db"], "dev-2", "hour")

    other = get(client, make_token("dev-2"), "dev-1")
    assert other.status_code == 403
    error = other.get_json()["error"]
    assert error["code"] == "forbidden_developer"
    assert error["details"][0]["field"] == "developer_id"
    assert "buckets" not in other.get_json()

    assert client.get("/api/developers/dev-1/metrics").status_code == 401


@pytest.mark.parametrize(("params", "field"), [
    ({"granularity": "week"}, "granularity"),
    ({"granularity": ""}, "granularity"),
    ({"from": "yesterday"}, "from"),
    ({"from": "2026-01-01"}, "from"),
    ({"to": "2026-01-01T00:00:00"}, "to"),  # no offset
    ({"to": "2026-13-01T00:00:00Z"}, "to"),
    ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from"),
])
def test_bad_parameters_are_400_naming_the_field(client, make_token, stored, params, field):  # type: ignore[no-untyped-def]
    response = get(client, make_token("dev-1"), **params)
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "invalid_parameter"
    assert [d["field"] for d in error["details"]] == [field]
    assert field in error["message"]
