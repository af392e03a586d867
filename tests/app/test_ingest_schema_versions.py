"""POST /api/workflow/events/orchestrate against the real PostgreSQL.

Event schema versions, and the raw event stored as received.
"""

from __future__ import annotations

import uuid
from datetime import timedelta, timezone

from tests.support.factories import batch, event, now
from tests.support.ingest import SUPPORTED, post, stored_events


def test_v10_file_edit_with_lines_changed_is_accepted(client, token, clean_db):
    ev = event("file.edit", version="1.0", file="a.py", lines_changed=7)
    as_11 = event("file.edit", version="1.0", file="a.py", lines_added=1, lines_deleted=1)
    body = post(client, token, batch([ev, as_11], schema_version=None)).get_json()
    assert body["accepted"] == 1
    assert [(e["index"], e["code"], e["field"]) for e in body["errors"]] == [
        (1, "missing_field", "payload.lines_changed")]
    row = stored_events(clean_db)[0]
    assert (str(row.event_id), row.schema_version, row.type, row.raw) == (ev["event_id"], "1.0", "file.edit", ev)


def test_v10_ai_completion_is_accepted_and_unknown_in_v11(client, token, clean_db):
    ok = event("ai.completion", accepted=True, chars=42)
    body = post(client, token, batch([ok], schema_version="1.0")).get_json()
    assert body["accepted"] == 1
    assert stored_events(clean_db)[0].schema_version == "1.0"
    in_11 = event("ai.completion", accepted=True, chars=42)
    body = post(client, token, batch([in_11, event("ai.suggestion_accepted", chars_inserted=5)])).get_json()
    assert [(e["code"], e["field"]) for e in body["errors"]] == [("unknown_event_type", "type")]


def test_newer_minor_is_validated_as_11_and_keeps_unknown_fields(client, token, clean_db):
    ev = event("file.edit", version="1.3", file="a.py", lines_added=2, lines_deleted=0,
               future_field={"nested": [1, 2.5, "x", None, True]}, another="é✓")
    ev["extra_top_level"] = {"kept": True}
    missing = event("file.edit", version="1.3", file="a.py", lines_changed=1)  # 1.0 shape is invalid in 1.1
    body = post(client, token, batch([ev, missing])).get_json()
    assert (body["accepted"], body["rejected"]) == (1, 1)
    assert body["errors"][0]["field"] == "payload.lines_added"
    row = stored_events(clean_db)[0]
    assert row.schema_version == "1.3"
    assert row.raw == ev


def test_major_2_is_rejected_per_event_and_lists_supported_versions(client, token, clean_db):
    v2 = event(version="2.0")
    ok = event()
    r = post(client, token, batch([v2, ok]))
    assert r.status_code == 202
    body = r.get_json()
    assert body["status"] == "partially_accepted"
    assert body["supported_schema_versions"] == SUPPORTED
    assert [(e["index"], e["event_id"], e["code"], e["field"]) for e in body["errors"]] == [
        (0, v2["event_id"], "unsupported_schema_version", "schema_version")]
    assert [str(r.event_id) for r in stored_events(clean_db)] == [ok["event_id"]]


def test_event_version_overrides_batch_default_and_is_required_without_one(client, token, clean_db):
    with_version = event("ai.completion", version="1.0", accepted=False, chars=3)
    without = event()
    body = post(client, token, batch([with_version, without], schema_version=None)).get_json()
    assert [(e["index"], e["code"], e["field"]) for e in body["errors"]] == [(1, "missing_field", "schema_version")]
    assert [r.schema_version for r in stored_events(clean_db)] == ["1.0"]


def test_raw_event_is_stored_exactly_as_received(client, token, clean_db):
    ev = {
        "payload": {"language": "python", "file": "src/ünï code.py", "lines_added": 10, "lines_deleted": 0,
                    "chars_typed": 123, "ratio": 0.125, "big": 12345678901234567890, "tags": ["a", {"b": None}]},
        "type": "file.edit",
        "timestamp": (now() - timedelta(minutes=3)).astimezone(timezone(timedelta(hours=5, minutes=30)))
        .isoformat(timespec="microseconds"),
        "event_id": str(uuid.uuid4()).upper(),
        "session_id": "s-1",
        "client_extra": {"anything": [1, 2, 3]},
    }
    r = post(client, token, batch([ev]))
    assert r.status_code == 202
    row = stored_events(clean_db)[0]
    assert row.raw == ev
    assert str(row.event_id) == ev["event_id"].lower()
    assert row.session_id == "s-1"
    assert row.client_utc_offset_minutes == 330
