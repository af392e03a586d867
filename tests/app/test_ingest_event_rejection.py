"""POST /api/workflow/events/orchestrate against the real PostgreSQL.

Invalid events are rejected one by one, the valid ones stored.
"""

from __future__ import annotations

from tests.support.factories import batch, event
from tests.support.ingest import SUPPORTED, edit, nothing_written, post, query, stored_events


def test_invalid_events_are_rejected_alone_and_valid_ones_stored(client, token, clean_db):
    good_first, good_last = event(), edit()
    missing_field = event("file.edit", file="a.py", lines_added=1)  # lines_deleted missing
    unknown_type = event("file.teleport")
    bad_timestamp = event()
    bad_timestamp["timestamp"] = "2024-05-01 12:00:00"  # no offset, no T
    bad_event_id = event(event_id="not-a-uuid")
    wrong_type = event("build.result", success="yes")
    events = [good_first, missing_field, unknown_type, bad_timestamp, bad_event_id, "not an object", wrong_type,
              good_last]
    r = post(client, token, batch(events))
    assert r.status_code == 202
    body = r.get_json()
    assert body["status"] == "partially_accepted"
    assert (body["received"], body["accepted"], body["duplicates"], body["rejected"]) == (8, 2, 0, 6)
    assert body["duplicate_event_ids"] == []
    assert "supported_schema_versions" not in body
    got = [(e["index"], e["event_id"], e["code"], e["field"]) for e in body["errors"]]
    assert got == [
        (1, missing_field["event_id"], "missing_field", "payload.lines_deleted"),
        (2, unknown_type["event_id"], "unknown_event_type", "type"),
        (3, bad_timestamp["event_id"], "invalid_field", "timestamp"),
        (4, "not-a-uuid", "invalid_field", "event_id"),
        (5, None, "invalid_event", "events[5]"),
        (6, wrong_type["event_id"], "invalid_type", "payload.success"),
    ]
    assert all(isinstance(e["message"], str) and e["message"] for e in body["errors"])
    rows = stored_events(clean_db)
    assert [(str(r.event_id), r.seq) for r in rows] == [(good_first["event_id"], 0), (good_last["event_id"], 7)]
    assert query(clean_db, "SELECT received, accepted, duplicates, rejected FROM batches")[0] == (8, 2, 0, 6)


def test_no_valid_event_is_422_and_writes_nothing(client, token, clean_db):
    bad = [event("file.teleport"), event("file.edit", file="a.py")]
    r = post(client, token, batch(bad))
    assert r.status_code == 422
    body = r.get_json()
    assert body["status"] == "rejected"
    assert (body["received"], body["accepted"], body["duplicates"], body["rejected"]) == (2, 0, 0, 2)
    assert [(e["index"], e["event_id"], e["code"]) for e in body["errors"]] == [
        (0, bad[0]["event_id"], "unknown_event_type"), (1, bad[1]["event_id"], "missing_field")]
    assert "supported_schema_versions" not in body
    assert body["correlation_id"] == r.headers["X-Correlation-ID"]
    nothing_written(clean_db)


def test_422_lists_supported_versions_when_a_version_is_unsupported(client, token, clean_db):
    r = post(client, token, batch([event(version="2.0"), event(version="0.9")]))
    assert r.status_code == 422
    body = r.get_json()
    assert body["supported_schema_versions"] == SUPPORTED
    assert [(e["code"], e["field"]) for e in body["errors"]] == [("unsupported_schema_version", "schema_version")] * 2
    nothing_written(clean_db)
