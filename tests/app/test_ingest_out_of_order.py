"""POST /api/workflow/events/orchestrate against the real PostgreSQL.

Late and out-of-order events, clock-skew correction, timestamp bounds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from tests.support.factories import batch, event, iso, now
from tests.support.ingest import edit, post, query, stored_events


def test_order_is_kept_as_seq_even_when_timestamps_go_backwards(client, token, clean_db):
    t = now()
    events = [event(ts=t - timedelta(minutes=m)) for m in (1, 50, 3, 20)]
    events.insert(2, event("file.teleport"))
    body = batch(events)
    assert post(client, token, body).status_code == 202
    rows = stored_events(clean_db)
    assert [(str(r.event_id), r.seq) for r in rows] == [
        (events[i]["event_id"], i) for i in (0, 1, 3, 4)]
    # A late batch (older events sent later) is accepted as well.
    late = batch([event(ts=t - timedelta(days=3))])
    assert post(client, token, late).status_code == 202


def test_clock_skew_is_corrected_for_a_client_two_hours_behind(client, token, clean_db):
    skew = timedelta(hours=2)
    client_now = now() - skew
    ev_utc = event(ts=client_now - timedelta(minutes=10))
    ev_local = event()
    ev_local["timestamp"] = (client_now - timedelta(minutes=4)).astimezone(timezone(timedelta(hours=2))).isoformat()
    body = batch([ev_utc, ev_local], sent_at=client_now)
    before = datetime.now(UTC)
    assert post(client, token, body).status_code == 202
    after = datetime.now(UTC)
    rows = stored_events(clean_db)
    sent_at = datetime.fromisoformat(body["sent_at"].replace("Z", "+00:00"))
    for row, ev, minutes, offset in ((rows[0], ev_utc, 10, 0), (rows[1], ev_local, 4, 120)):
        client_ts = datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00"))
        assert row.client_ts == client_ts
        assert row.client_utc_offset_minutes == offset
        assert row.corrected_ts == row.received_at - (sent_at - client_ts)
        assert before - timedelta(minutes=minutes) <= row.corrected_ts <= after - timedelta(minutes=minutes)
        assert skew <= row.corrected_ts - row.client_ts <= skew + (after - before) + timedelta(seconds=1)
        assert row.received_at.tzinfo is not None and before <= row.received_at <= after


def test_future_and_too_old_events_are_rejected_after_correction(client, token, clean_db):
    sent = now() - timedelta(hours=2)  # a client clock two hours behind
    at_future_limit = event(ts=sent + timedelta(minutes=5))
    past_future_limit = event(ts=sent + timedelta(minutes=5, seconds=1))
    looks_future_is_fine = event(ts=sent - timedelta(minutes=1))  # its raw timestamp is 2 h ago: fine either way
    at_age_limit = event(ts=sent - timedelta(days=30))
    past_age_limit = event(ts=sent - timedelta(days=30, seconds=1))
    events = [at_future_limit, past_future_limit, looks_future_is_fine, at_age_limit, past_age_limit]
    r = post(client, token, batch(events, sent_at=sent))
    body = r.get_json()
    assert r.status_code == 202
    assert [(e["index"], e["code"], e["field"]) for e in body["errors"]] == [
        (1, "timestamp_in_future", "timestamp"), (4, "timestamp_too_old", "timestamp")]
    assert "5 minutes" in body["errors"][0]["message"] and "30 days" in body["errors"][1]["message"]
    assert {str(r.event_id) for r in stored_events(clean_db)} == {
        at_future_limit["event_id"], looks_future_is_fine["event_id"], at_age_limit["event_id"]}


def test_an_event_in_the_clients_future_is_rejected_even_with_a_slow_clock(client, token, clean_db):
    sent = now() - timedelta(hours=2)
    # Its raw timestamp is an hour in the server's past, but an hour after the client's own send time.
    r = post(client, token, batch([event(ts=sent + timedelta(hours=1)), event(ts=sent)], sent_at=sent))
    assert [e["code"] for e in r.get_json()["errors"]] == ["timestamp_in_future"]


def test_any_rfc3339_offset_is_stored_without_a_500(client, token, clean_db):
    """RFC 3339 allows offsets up to ±23:59; PostgreSQL's timestamptz input only up to ±15:59."""
    t = now()
    ev = event()
    ev["timestamp"] = (t - timedelta(minutes=3)).astimezone(timezone(timedelta(hours=20, minutes=46))).isoformat()
    body = batch([ev])
    body["sent_at"] = t.astimezone(timezone(-timedelta(hours=23, minutes=59))).isoformat()
    r = post(client, token, body)
    assert r.status_code == 202, r.get_json()
    row = stored_events(clean_db)[0]
    assert row.client_ts == t - timedelta(minutes=3)
    assert row.client_utc_offset_minutes == 20 * 60 + 46
    assert query(clean_db, "SELECT sent_at FROM batches")[0][0] == t


def test_timestamps_outside_the_utc_range_are_rejected_not_500(client, token, clean_db):
    # A client clock set to year 1: consistent with its own sent_at, but before 0001-01-01 once in UTC.
    ev, ok = event(), event()
    ev["timestamp"] = "0001-01-01T00:30:00+01:00"
    ok["timestamp"] = "0001-01-01T01:30:00+00:00"
    body = batch([ev, ok])
    body["sent_at"] = "0001-01-01T02:00:00Z"
    r = post(client, token, body)
    assert r.status_code == 202, r.get_json()
    assert [(e["index"], e["code"], e["field"]) for e in r.get_json()["errors"]] == [
        (0, "invalid_timestamp", "timestamp")]
    row = stored_events(clean_db)[0]
    assert (str(row.event_id), row.client_ts.year) == (ok["event_id"], 1)
    assert row.received_at - row.corrected_ts == timedelta(minutes=30)
    bad_sent_at = batch([event()])
    bad_sent_at["sent_at"] = "0001-01-01T00:00:00+01:00"
    r = post(client, token, bad_sent_at)
    assert r.status_code == 400
    assert r.get_json()["error"]["details"] == [{"field": "sent_at", "message": "out of range in UTC"}]


def test_stored_events_are_never_modified_by_a_later_batch(client, token, clean_db):
    original = edit(ts=now() - timedelta(minutes=30))
    post(client, token, batch([original]))
    before = [tuple(r) for r in stored_events(clean_db)]
    changed = dict(original, timestamp=iso(now() - timedelta(minutes=2)),
                   payload={"file": "x.py", "lines_added": 999, "lines_deleted": 0})
    r = post(client, token, batch([changed], sent_at=now() + timedelta(seconds=5)))
    assert r.get_json()["duplicate_event_ids"] == [original["event_id"]]
    assert [tuple(r) for r in stored_events(clean_db)] == before
