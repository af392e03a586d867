"""GET /api/developers/<id>/events/export and /metrics/export, and `flask --app app data export`."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from tests.support.factories import auth, batch, event, iso
from tests.support.ingest import post

# Recent enough for ingest's maximum event age; 09:00 UTC two days ago.
BASE = (datetime.now(UTC) - timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
DAY = BASE.date().isoformat()
NEXT_DAY = (BASE.date() + timedelta(days=1)).isoformat()


def _post_history(client, token: str) -> list[str]:
    """Three batches (one resent whole, one event resent in another batch); returns the unique event ids."""
    first = [event("file.edit", BASE + timedelta(minutes=i), file="src/a.py", lines_added=i, lines_deleted=0)
             for i in range(5)]
    second = [event("file.save", BASE + timedelta(minutes=10 + i)) for i in range(3)]
    b1 = batch(first)
    assert post(client, token, b1).status_code == 202
    assert post(client, token, b1).status_code == 200  # the same batch again: a duplicate
    b2 = batch([*second, first[0]])  # one event of the first batch again, in a new batch
    assert post(client, token, b2).status_code == 202
    # Equal timestamps keep batch order: seq breaks the tie.
    tied = [event("file.save", BASE + timedelta(hours=1), file=f"src/t{i}.py") for i in range(3)]
    assert post(client, token, batch(tied)).status_code == 202
    return [e["event_id"] for e in first + second + tied]


def _near(stamp: str, expected: datetime) -> bool:
    """Stored times are corrected for the client's clock skew (under a second here)."""
    return abs(datetime.fromisoformat(stamp) - expected) < timedelta(seconds=5)


def _ndjson(response) -> list[dict]:
    return [json.loads(line) for line in response.data.decode().splitlines()]


def test_ndjson_export_holds_every_stored_event_once_in_pipeline_order(client, make_token):
    token = make_token("dev-1")
    ids = _post_history(client, token)
    response = client.get("/api/developers/dev-1/events/export?format=ndjson", headers=auth(token))
    assert response.status_code == 200
    assert response.mimetype == "application/x-ndjson"
    assert response.headers["Content-Disposition"] == \
        'attachment; filename="devpulse-dev-1-events-start-to-now.ndjson"'
    rows = _ndjson(response)
    assert [r["event_id"] for r in rows] == ids  # once each, corrected time then batch order
    first = rows[0]
    # The original fields, plus what the server stored about the event.
    assert first["type"] == "file.edit" and first["payload"]["file"] == "src/a.py"
    assert set(first) >= {"event_id", "type", "timestamp", "payload", "corrected_timestamp", "received_at",
                          "batch_id", "seq", "schema_version"}
    assert _near(first["corrected_timestamp"], BASE)
    assert [r["seq"] for r in rows[-3:]] == [0, 1, 2]


def test_range_is_from_inclusive_to_exclusive_and_dates_are_local_midnight(client, make_token):
    token = make_token("dev-1")
    _post_history(client, token)
    start, end = iso(BASE + timedelta(minutes=2)), iso(BASE + timedelta(minutes=11))
    rows = _ndjson(client.get(f"/api/developers/dev-1/events/export?from={start}&to={end}", headers=auth(token)))
    assert len(rows) == 4
    expected = [BASE + timedelta(minutes=m) for m in (2, 3, 4, 10)]
    assert all(_near(r["corrected_timestamp"], m) for r, m in zip(rows, expected, strict=True))
    day = client.get(f"/api/developers/dev-1/events/export?from={DAY}&to={NEXT_DAY}", headers=auth(token))
    assert len(_ndjson(day)) == 11
    assert f'filename="devpulse-dev-1-events-{DAY}-to-{NEXT_DAY}.ndjson"' in day.headers["Content-Disposition"]
    assert _ndjson(client.get(f"/api/developers/dev-1/events/export?from={NEXT_DAY}", headers=auth(token))) == []


def test_csv_and_parquet_carry_the_same_events_typed(client, make_token):
    token = make_token("dev-1")
    ids = _post_history(client, token)
    as_csv = client.get("/api/developers/dev-1/events/export?format=csv", headers=auth(token))
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    records = list(csv.DictReader(io.StringIO(as_csv.data.decode())))
    assert [r["event_id"] for r in records] == ids
    assert json.loads(records[0]["event"])["payload"]["lines_added"] == 0
    assert _near(records[0]["corrected_timestamp"], BASE)

    as_parquet = client.get("/api/developers/dev-1/events/export?format=parquet", headers=auth(token))
    assert as_parquet.status_code == 200
    table = pq.read_table(io.BytesIO(as_parquet.data))
    assert table.column("event_id").to_pylist() == ids
    assert str(table.schema.field("corrected_timestamp").type) == "timestamp[us, tz=UTC]"
    assert str(table.schema.field("seq").type) == "int32"
    assert _near(table.column("corrected_timestamp").to_pylist()[0].isoformat(), BASE)
    uuid.UUID(table.column("batch_id").to_pylist()[0])


def test_metrics_export_has_a_row_per_bucket(client, make_token):
    token = make_token("dev-1")
    _post_history(client, token)
    response = client.get("/api/developers/dev-1/metrics/export?granularity=hour&format=csv", headers=auth(token))
    assert response.status_code == 200
    header = response.data.decode().splitlines()[0].split(",")
    assert header[:3] == ["bucket_start", "events", "active_seconds"]
    assert 'filename="devpulse-dev-1-metrics-hour-start-to-now.csv"' in response.headers["Content-Disposition"]
    as_ndjson = client.get("/api/developers/dev-1/metrics/export?format=ndjson", headers=auth(token))
    assert as_ndjson.status_code == 200 and as_ndjson.mimetype == "application/x-ndjson"


@pytest.mark.parametrize("url, field", [
    ("/api/developers/dev-1/events/export?format=xml", "format"),
    ("/api/developers/dev-1/metrics/export?format=parquet", "format"),
    ("/api/developers/dev-1/metrics/export?granularity=month", "granularity"),
    ("/api/developers/dev-1/events/export?from=yesterday", "from"),
    ("/api/developers/dev-1/events/export?from=2026-03-03&to=2026-03-02", "from"),  # from after to
])
def test_bad_parameters_are_400_naming_the_field(client, make_token, url, field):
    response = client.get(url, headers=auth(make_token("dev-1")))
    assert response.status_code == 400
    assert response.json["error"]["details"][0]["field"] == field


def test_only_the_developer_or_an_admin_exports(client, make_token):
    token = make_token("dev-1")
    _post_history(client, token)
    other = make_token("dev-2")
    assert client.get("/api/developers/dev-1/events/export", headers=auth(other)).status_code == 403
    assert client.get("/api/developers/dev-1/metrics/export", headers=auth(other)).status_code == 403
    assert client.get("/api/developers/dev-1/events/export").status_code == 401
    admin = make_token(None, admin=True)
    assert len(_ndjson(client.get("/api/developers/dev-1/events/export", headers=auth(admin)))) == 11


def test_cli_exports_to_a_file(app, client, make_token, tmp_path):
    token = make_token("dev-1")
    ids = _post_history(client, token)
    runner = app.test_cli_runner()
    out = tmp_path / "events.parquet"
    result = runner.invoke(args=["data", "export", "--developer", "dev-1", "--format", "parquet", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert pq.read_table(out).column("event_id").to_pylist() == ids
    result = runner.invoke(args=["data", "export", "--developer", "dev-1", "--from", iso(BASE + timedelta(minutes=10))])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["event_id"] for line in result.stdout.splitlines()] == ids[5:]
    bad = runner.invoke(args=["data", "export", "--developer", "dev-1", "--from", "soon"])
    assert bad.exit_code == 2 and "--from" in bad.output
    metrics = runner.invoke(args=["data", "export", "--developer", "dev-1", "--what", "metrics", "--format", "csv"])
    assert metrics.exit_code == 0 and metrics.stdout.startswith("bucket_start,events,")
