"""POST /api/workflow/events/orchestrate against the real PostgreSQL: every rule of the ingestion edge."""

from __future__ import annotations

import gzip
import json
import random
import re
import threading
import tracemalloc
import uuid
import zlib
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import text

from app.auth import clear_token_cache
from models.tokens import create_token, revoke_token
from tests.conftest import TABLES
from tests.factories import auth, batch, event, iso, now

URL = "/api/workflow/events/orchestrate"
SUPPORTED = ["1.0", "1.1"]


# ---------------------------------------------------------------------------------------------------------- helpers


def post(client, token: str | None, body: Any = None, *, headers: dict[str, str] | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
    all_headers = dict(auth(token)) if token else {}
    all_headers.update(headers or {})
    if body is not None:
        kwargs["json"] = body
    return client.post(URL, headers=all_headers, **kwargs)


def counts(db) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}


def query(db, sql: str, **params: Any) -> list[Any]:  # type: ignore[no-untyped-def]
    with db.engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def stored_events(db, batch_id: str | None = None) -> list[Any]:  # type: ignore[no-untyped-def]
    sql = "SELECT * FROM raw_events" + (" WHERE batch_id = :b" if batch_id else "") + " ORDER BY batch_id, seq"
    return query(db, sql, b=batch_id)


def nothing_written(db) -> None:  # type: ignore[no-untyped-def]
    assert {t: n for t, n in counts(db).items() if t != "api_tokens"} == {t: 0 for t in TABLES if t != "api_tokens"}


def edit(ts: datetime | None = None, **kw: Any) -> dict[str, Any]:
    return event("file.edit", ts, file="src/a.py", lines_added=3, lines_deleted=1, **kw)


@pytest.fixture
def token(make_token) -> str:  # type: ignore[no-untyped-def]
    return make_token("dev-1")


# ------------------------------------------------------------------------------------------------------------- auth


def test_missing_token_is_401_and_writes_nothing(client, clean_db):  # type: ignore[no-untyped-def]
    r = post(client, None, batch([event()]))
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "missing_token"
    assert r.get_json()["error"]["details"] == [{"field": "Authorization", "message": "missing"}]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.get_json()["correlation_id"] == r.headers["X-Correlation-ID"]
    nothing_written(clean_db)


@pytest.mark.parametrize("header", ["Bearer dp_not-a-real-token", "Bearer", "Token abc", "Basic !!!"])
def test_unknown_or_malformed_token_is_401(client, token, clean_db, header):  # type: ignore[no-untyped-def]
    r = client.post(URL, json=batch([event()]), headers={"Authorization": header})
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "invalid_token"
    nothing_written(clean_db)


def test_revoked_token_is_401(client, clean_db):  # type: ignore[no-untyped-def]
    with clean_db.transaction() as s:
        tok = create_token(s, "dev-1")
    assert post(client, tok, batch([event()])).status_code == 202
    with clean_db.transaction() as s:
        assert revoke_token(s, tok) is True
    clear_token_cache()  # lookups are cached for TOKEN_CACHE_SECONDS by design
    before = counts(clean_db)
    r = post(client, tok, batch([event()]))
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "invalid_token"
    assert counts(clean_db) == before


def test_expired_token_is_401(client, clean_db):  # type: ignore[no-untyped-def]
    with clean_db.transaction() as s:
        expired = create_token(s, "dev-1", expires_at=datetime.now(UTC) - timedelta(seconds=1))
        valid = create_token(s, "dev-1", expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert post(client, expired, batch([event()])).status_code == 401
    assert post(client, valid, batch([event()])).status_code == 202


def test_developer_token_posting_for_another_developer_is_403_and_writes_nothing(client, token, clean_db):  # type: ignore[no-untyped-def]
    r = post(client, token, batch([event()], developer_id="dev-2"))
    assert r.status_code == 403
    body = r.get_json()
    assert body["error"]["code"] == "forbidden_developer"
    assert body["error"]["details"] == [{"field": "developer_id", "message": "does not match the token's developer"}]
    nothing_written(clean_db)


def test_admin_token_may_post_for_any_developer(client, make_token, clean_db):  # type: ignore[no-untyped-def]
    admin = make_token(None, admin=True)
    body = batch([event()], developer_id="dev-7")
    assert post(client, admin, body).status_code == 202
    assert query(clean_db, "SELECT developer_id FROM batches")[0][0] == "dev-7"
    assert query(clean_db, "SELECT developer_id FROM raw_events")[0][0] == "dev-7"


# --------------------------------------------------------------------------------------------- per-event rejection


def test_invalid_events_are_rejected_alone_and_valid_ones_stored(client, token, clean_db):  # type: ignore[no-untyped-def]
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


def test_no_valid_event_is_422_and_writes_nothing(client, token, clean_db):  # type: ignore[no-untyped-def]
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


def test_422_lists_supported_versions_when_a_version_is_unsupported(client, token, clean_db):  # type: ignore[no-untyped-def]
    r = post(client, token, batch([event(version="2.0"), event(version="0.9")]))
    assert r.status_code == 422
    body = r.get_json()
    assert body["supported_schema_versions"] == SUPPORTED
    assert [(e["code"], e["field"]) for e in body["errors"]] == [("unsupported_schema_version", "schema_version")] * 2
    nothing_written(clean_db)


# ------------------------------------------------------------------------------------------------ event-level dedup


def test_event_stored_by_an_earlier_batch_is_a_duplicate(client, token, clean_db):  # type: ignore[no-untyped-def]
    a, b, c = event(), event(), event()
    first = batch([a, b])
    assert post(client, token, first).status_code == 202
    b_again = dict(b, payload={"file": "changed.py"})  # same id, other content: still the stored one wins
    second = batch([b_again, c])
    r = post(client, token, second)
    assert r.status_code == 202
    body = r.get_json()
    assert body["status"] == "accepted"
    assert (body["received"], body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 1, 0)
    assert body["duplicate_event_ids"] == [b["event_id"]]
    rows = {str(r.event_id): r for r in stored_events(clean_db)}
    assert set(rows) == {a["event_id"], b["event_id"], c["event_id"]}
    assert str(rows[b["event_id"]].batch_id) == first["batch_id"]
    assert rows[b["event_id"]].raw == b
    audit = query(clean_db, "SELECT details FROM audit_log WHERE batch_id = :b AND step = 'deduplicated'",
                  b=second["batch_id"])
    assert [d[0] for d in audit] == [{"event_id": b["event_id"], "original_batch_id": first["batch_id"]}]
    assert query(clean_db, "SELECT accepted, duplicates FROM batches WHERE batch_id = :b", b=second["batch_id"]) \
        == [(1, 1)]


def test_event_repeated_inside_one_batch_is_stored_once(client, token, clean_db):  # type: ignore[no-untyped-def]
    a, b = event(), event()
    a_again = dict(a, payload={"file": "other.py"})
    body_sent = batch([a, b, a_again])
    body = post(client, token, body_sent).get_json()
    assert (body["received"], body["accepted"], body["duplicates"], body["rejected"]) == (3, 2, 1, 0)
    assert body["duplicate_event_ids"] == [a["event_id"]]
    rows = stored_events(clean_db)
    assert [(str(r.event_id), r.seq) for r in rows] == [(a["event_id"], 0), (b["event_id"], 1)]
    assert rows[0].raw == a  # the first occurrence is kept
    audit = query(clean_db, "SELECT details FROM audit_log WHERE step = 'deduplicated'")
    assert [d[0] for d in audit] == [{"event_id": a["event_id"], "original_batch_id": body_sent["batch_id"]}]


def test_batch_of_only_duplicates_stores_nothing_new(client, token, clean_db):  # type: ignore[no-untyped-def]
    a, b = event(), event()
    post(client, token, batch([a, b]))
    second = batch([b, a])
    r = post(client, token, second)
    assert r.status_code == 202
    body = r.get_json()
    assert (body["accepted"], body["duplicates"]) == (0, 2)
    assert sorted(body["duplicate_event_ids"]) == sorted([a["event_id"], b["event_id"]])
    assert counts(clean_db)["raw_events"] == 2
    # Nothing new to process: no outbox row, and the batch is already complete.
    assert query(clean_db, "SELECT count(*) FROM outbox WHERE batch_id = :b", b=second["batch_id"])[0][0] == 0
    assert query(clean_db, "SELECT status FROM batches WHERE batch_id = :b", b=second["batch_id"])[0][0] \
        == "processed"


# ------------------------------------------------------------------------------------------------ batch-level dedup


def test_resending_a_batch_with_another_sent_at_is_a_200_duplicate(client, token, clean_db):  # type: ignore[no-untyped-def]
    body = batch([event(), edit()], sent_at=now())
    first = post(client, token, body, headers={"X-Correlation-ID": "first-send"})
    assert first.status_code == 202
    before = counts(clean_db)
    stored_before = stored_events(clean_db)
    resend = dict(body, sent_at=iso(now() + timedelta(seconds=42)))
    r = post(client, token, resend)
    assert r.status_code == 200
    got = r.get_json()
    assert got["status"] == "duplicate"
    assert got["batch_id"] == body["batch_id"]
    assert (got["received"], got["accepted"], got["duplicates"], got["rejected"]) == (2, 0, 2, 0)
    assert got["original_correlation_id"] == "first-send"
    assert counts(clean_db) == before
    assert stored_events(clean_db) == stored_before


def test_same_batch_id_with_other_content_is_409(client, token, clean_db):  # type: ignore[no-untyped-def]
    body = batch([event()])
    assert post(client, token, body).status_code == 202
    before = counts(clean_db)
    r = post(client, token, dict(body, events=[event()]))
    assert r.status_code == 409
    assert r.get_json()["error"]["code"] == "batch_conflict"
    assert r.get_json()["error"]["details"][0]["field"] == "batch_id"
    assert counts(clean_db) == before


def test_resending_a_rejected_batch_is_rejected_again(client, token, clean_db):  # type: ignore[no-untyped-def]
    body = batch([event("file.teleport")])
    assert post(client, token, body).status_code == 422
    assert post(client, token, body).status_code == 422
    nothing_written(clean_db)


# ---------------------------------------------------------------------------------------------- late / out of order


def test_order_is_kept_as_seq_even_when_timestamps_go_backwards(client, token, clean_db):  # type: ignore[no-untyped-def]
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


def test_clock_skew_is_corrected_for_a_client_two_hours_behind(client, token, clean_db):  # type: ignore[no-untyped-def]
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


def test_future_and_too_old_events_are_rejected_after_correction(client, token, clean_db):  # type: ignore[no-untyped-def]
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


def test_an_event_in_the_clients_future_is_rejected_even_with_a_slow_clock(client, token, clean_db):  # type: ignore[no-untyped-def]
    sent = now() - timedelta(hours=2)
    # Its raw timestamp is an hour in the server's past, but an hour after the client's own send time.
    r = post(client, token, batch([event(ts=sent + timedelta(hours=1)), event(ts=sent)], sent_at=sent))
    assert [e["code"] for e in r.get_json()["errors"]] == ["timestamp_in_future"]


def test_any_rfc3339_offset_is_stored_without_a_500(client, token, clean_db):  # type: ignore[no-untyped-def]
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


def test_timestamps_outside_the_utc_range_are_rejected_not_500(client, token, clean_db):  # type: ignore[no-untyped-def]
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


def test_stored_events_are_never_modified_by_a_later_batch(client, token, clean_db):  # type: ignore[no-untyped-def]
    original = edit(ts=now() - timedelta(minutes=30))
    post(client, token, batch([original]))
    before = [tuple(r) for r in stored_events(clean_db)]
    changed = dict(original, timestamp=iso(now() - timedelta(minutes=2)),
                   payload={"file": "x.py", "lines_added": 999, "lines_deleted": 0})
    r = post(client, token, batch([changed], sent_at=now() + timedelta(seconds=5)))
    assert r.get_json()["duplicate_event_ids"] == [original["event_id"]]
    assert [tuple(r) for r in stored_events(clean_db)] == before


# ---------------------------------------------------------------------------------------------------- schema versions


def test_v10_file_edit_with_lines_changed_is_accepted(client, token, clean_db):  # type: ignore[no-untyped-def]
    ev = event("file.edit", version="1.0", file="a.py", lines_changed=7)
    as_11 = event("file.edit", version="1.0", file="a.py", lines_added=1, lines_deleted=1)
    body = post(client, token, batch([ev, as_11], schema_version=None)).get_json()
    assert body["accepted"] == 1
    assert [(e["index"], e["code"], e["field"]) for e in body["errors"]] == [
        (1, "missing_field", "payload.lines_changed")]
    row = stored_events(clean_db)[0]
    assert (str(row.event_id), row.schema_version, row.type, row.raw) == (ev["event_id"], "1.0", "file.edit", ev)


def test_v10_ai_completion_is_accepted_and_unknown_in_v11(client, token, clean_db):  # type: ignore[no-untyped-def]
    ok = event("ai.completion", accepted=True, chars=42)
    body = post(client, token, batch([ok], schema_version="1.0")).get_json()
    assert body["accepted"] == 1
    assert stored_events(clean_db)[0].schema_version == "1.0"
    in_11 = event("ai.completion", accepted=True, chars=42)
    body = post(client, token, batch([in_11, event("ai.suggestion_accepted", chars_inserted=5)])).get_json()
    assert [(e["code"], e["field"]) for e in body["errors"]] == [("unknown_event_type", "type")]


def test_newer_minor_is_validated_as_11_and_keeps_unknown_fields(client, token, clean_db):  # type: ignore[no-untyped-def]
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


def test_major_2_is_rejected_per_event_and_lists_supported_versions(client, token, clean_db):  # type: ignore[no-untyped-def]
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


def test_event_version_overrides_batch_default_and_is_required_without_one(client, token, clean_db):  # type: ignore[no-untyped-def]
    with_version = event("ai.completion", version="1.0", accepted=False, chars=3)
    without = event()
    body = post(client, token, batch([with_version, without], schema_version=None)).get_json()
    assert [(e["index"], e["code"], e["field"]) for e in body["errors"]] == [(1, "missing_field", "schema_version")]
    assert [r.schema_version for r in stored_events(clean_db)] == ["1.0"]


def test_raw_event_is_stored_exactly_as_received(client, token, clean_db):  # type: ignore[no-untyped-def]
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


# --------------------------------------------------------------------------------------------------------- atomicity


def test_batch_events_audit_and_outbox_are_written_together(client, token, clean_db):  # type: ignore[no-untyped-def]
    a = event()
    body_sent = batch([a, edit(), a, event("file.teleport")])
    r = post(client, token, body_sent, headers={"X-Correlation-ID": "corr-atomic"})
    assert r.status_code == 202
    assert counts(clean_db) == {**{t: 0 for t in TABLES}, "api_tokens": 1, "batches": 1, "raw_events": 2,
                                "outbox": 1, "audit_log": 4}
    bid = body_sent["batch_id"]
    steps = query(clean_db, "SELECT step, correlation_id, batch_id FROM audit_log ORDER BY id")
    assert [s[0] for s in steps] == ["received", "validated", "deduplicated", "persisted"]
    assert {(s[1], str(s[2])) for s in steps} == {("corr-atomic", bid)}
    details = dict(query(clean_db, "SELECT step, details FROM audit_log"))
    assert details["received"]["received"] == 4
    assert (details["validated"]["valid"], details["validated"]["rejected"]) == (3, 1)
    assert details["persisted"] == {"accepted": 2, "duplicates": 1}
    outbox = query(clean_db, "SELECT batch_id, correlation_id, status, is_replay FROM outbox")
    assert [(str(o[0]), o[1], o[2], o[3]) for o in outbox] == [(bid, "corr-atomic", "pending", False)]
    batch_row = query(clean_db, "SELECT status, received, accepted, duplicates, rejected, correlation_id "
                                "FROM batches")[0]
    assert tuple(batch_row) == ("persisted", 4, 2, 1, 1, "corr-atomic")


def _four_xx_cases(client, token, db):  # type: ignore[no-untyped-def]
    stored = batch([event()])
    assert post(client, token, stored).status_code == 202
    yield 409, post(client, token, dict(stored, events=[event()]))
    yield 400, client.post(URL, data=b'{"batch_id": ', headers=auth(token), content_type="application/json")
    yield 400, post(client, token, {k: v for k, v in batch([event()]).items() if k != "batch_id"})
    yield 401, post(client, "dp_wrong", batch([event()]))
    yield 403, post(client, token, batch([event()], developer_id="someone-else"))
    yield 413, post(client, token, batch([event() for _ in range(1001)]))
    yield 415, client.post(URL, data=json.dumps(batch([event()])), headers=auth(token), content_type="text/plain")
    yield 422, post(client, token, batch([event("file.teleport")]))


def test_no_4xx_writes_anything(client, token, clean_db):  # type: ignore[no-untyped-def]
    cases = _four_xx_cases(client, token, clean_db)
    first_status, first = next(cases)
    before = counts(clean_db)
    assert before["batches"] == 1
    seen = []
    for status, r in [(first_status, first), *cases]:
        assert r.status_code == status, (status, r.get_json())
        assert r.get_json()["correlation_id"] == r.headers["X-Correlation-ID"]
        assert counts(clean_db) == before, status
        seen.append(status)
    assert seen == [409, 400, 400, 401, 403, 413, 415, 422]


def test_a_failure_inside_the_transaction_leaves_nothing_behind(client, token, clean_db):  # type: ignore[no-untyped-def]
    """The outbox insert is the last write: make the database refuse it and nothing else may remain."""
    with clean_db.engine.begin() as conn:
        conn.execute(text("CREATE FUNCTION test_refuse() RETURNS trigger LANGUAGE plpgsql AS "
                          "$$ BEGIN RAISE EXCEPTION 'refused by test'; END $$"))
        conn.execute(text("CREATE TRIGGER test_refuse BEFORE INSERT ON outbox "
                          "FOR EACH ROW EXECUTE FUNCTION test_refuse()"))
    try:
        r = post(client, token, batch([event(), edit()]))
    finally:
        with clean_db.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER test_refuse ON outbox"))
            conn.execute(text("DROP FUNCTION test_refuse()"))
    assert r.status_code == 500
    assert r.get_json()["error"]["code"] == "internal_error"
    nothing_written(clean_db)


# ------------------------------------------------------------------------------------------------------------ limits


def test_1000_events_are_accepted_and_1001_are_413(client, token, clean_db):  # type: ignore[no-untyped-def]
    r = post(client, token, batch([event() for _ in range(1001)]))
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "too_many_events"
    assert r.get_json()["error"]["details"][0]["field"] == "events"
    nothing_written(clean_db)
    r = post(client, token, batch([event() for _ in range(1000)]))
    assert r.status_code == 202
    assert r.get_json()["accepted"] == 1000
    assert counts(clean_db)["raw_events"] == 1000


def _padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON, padded with insignificant whitespace to exactly `size` bytes."""
    data = json.dumps(body).encode()
    assert len(data) <= size
    return data + b" " * (size - len(data))


def test_body_up_to_5mb_is_accepted_and_larger_is_413(client, token, clean_db):  # type: ignore[no-untyped-def]
    limit = 5 * 1024 * 1024
    r = client.post(URL, data=_padded(batch([event()]), limit + 1), headers=auth(token),
                    content_type="application/json")
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "payload_too_large"
    nothing_written(clean_db)
    r = client.post(URL, data=_padded(batch([event()]), limit), headers=auth(token), content_type="application/json")
    assert r.status_code == 202


def gz_headers(token: str) -> dict[str, str]:
    return {**auth(token), "Content-Encoding": "gzip"}


def test_gzip_body_is_accepted(client, token, clean_db):  # type: ignore[no-untyped-def]
    events = [event(), edit()]
    r = client.post(URL, data=gzip.compress(json.dumps(batch(events)).encode()), headers=gz_headers(token),
                    content_type="application/json")
    assert r.status_code == 202
    assert r.get_json()["accepted"] == 2
    assert sorted(row.raw["event_id"] for row in stored_events(clean_db)) == sorted(e["event_id"] for e in events)


def test_gzip_that_expands_beyond_5mb_is_413(client, token, clean_db):  # type: ignore[no-untyped-def]
    data = gzip.compress(_padded(batch([event()]), 5 * 1024 * 1024 + 1))
    assert len(data) < 100_000
    r = client.post(URL, data=data, headers=gz_headers(token), content_type="application/json")
    assert r.status_code == 413
    nothing_written(clean_db)


def test_gzip_bomb_is_413_without_being_expanded(client, token, clean_db):  # type: ignore[no-untyped-def]
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = b"\0" * (1024 * 1024)
    bomb = b"".join(compressor.compress(chunk) for _ in range(50)) + compressor.flush()
    assert len(bomb) < 100_000  # 50 MB of zeros
    tracemalloc.start()
    try:
        r = client.post(URL, data=bomb, headers=gz_headers(token), content_type="application/json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "payload_too_large"
    assert peak < 20 * 1024 * 1024, f"peak {peak} bytes: the bomb was expanded"
    nothing_written(clean_db)


def test_invalid_gzip_is_400(client, token, clean_db):  # type: ignore[no-untyped-def]
    r = client.post(URL, data=b"not gzip at all", headers=gz_headers(token), content_type="application/json")
    assert r.status_code == 400
    assert r.get_json()["error"]["code"] == "invalid_gzip"


def test_unknown_content_encoding_is_415(client, token, clean_db):  # type: ignore[no-untyped-def]
    r = client.post(URL, data=b"{}", headers={**auth(token), "Content-Encoding": "br"},
                    content_type="application/json")
    assert r.status_code == 415


def test_payload_over_16kb_rejects_that_event_alone(client, token, clean_db):  # type: ignore[no-untyped-def]
    base = len(json.dumps({"file": "x", "pad": ""}, separators=(",", ":")))
    at_limit = event(file="x", pad="a" * (16 * 1024 - base))
    over = event(file="x", pad="a" * (16 * 1024 - base + 1))
    small = event()
    body = post(client, token, batch([at_limit, over, small])).get_json()
    assert (body["accepted"], body["rejected"]) == (2, 1)
    assert [(e["index"], e["event_id"], e["code"], e["field"]) for e in body["errors"]] == [
        (1, over["event_id"], "payload_too_large", "payload")]
    assert {str(r.event_id) for r in stored_events(clean_db)} == {at_limit["event_id"], small["event_id"]}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(client, token, clean_db, content_type):  # type: ignore[no-untyped-def]
    kwargs = {"content_type": content_type} if content_type else {}
    r = client.post(URL, data=json.dumps(batch([event()])), headers=auth(token), **kwargs)
    assert r.status_code == 415
    assert r.get_json()["error"]["code"] == "unsupported_media_type"
    assert r.get_json()["error"]["details"][0]["field"] == "Content-Type"
    nothing_written(clean_db)


@pytest.mark.parametrize(("data", "why"), [
    (b'{"batch_id": "x", ', "truncated"),
    (b"", "empty"),
    (b'{"a": NaN}', "NaN"),
    (b'{"a": Infinity}', "Infinity"),
    (b'{"batch_id": "\xff\xfe"}', "invalid UTF-8"),
    (b'{"a": "\xc3"}', "truncated UTF-8 sequence"),
    (b"[" * 100_000 + b"]" * 100_000, "nested far too deeply"),
    (b'{"a": ' + b"[" * 70 + b"]" * 70 + b"}", "nested more than 64 levels"),
])
def test_malformed_bodies_are_400(client, token, clean_db, data, why):  # type: ignore[no-untyped-def]
    r = client.post(URL, data=data, headers=auth(token), content_type="application/json")
    assert r.status_code == 400, why
    assert r.get_json()["error"]["code"] == "invalid_json"
    assert r.get_json()["error"]["details"][0]["field"] == "_body"
    nothing_written(clean_db)


def test_deep_payload_inside_an_event_is_400_not_500(client, token, clean_db):  # type: ignore[no-untyped-def]
    for depth in (70, 500, 940):  # below json's own recursion limit, deep enough to break what comes after
        ev = event()
        raw = json.dumps(batch([ev])).replace('"file": "src/app.py"', '"file": "x", "d": ' + "[" * depth
                                              + "]" * depth)
        r = client.post(URL, data=raw, headers=auth(token), content_type="application/json")
        assert r.status_code == 400, depth
    nothing_written(clean_db)


def test_payload_nested_within_the_limit_is_stored(client, token, clean_db):  # type: ignore[no-untyped-def]
    nested: Any = 1
    for _ in range(55):
        nested = {"n": nested}
    ev = event(file="x", nested=nested)
    assert post(client, token, batch([ev])).status_code == 202
    assert stored_events(clean_db)[0].raw == ev


@pytest.mark.parametrize(("mutate", "field"), [
    (lambda b: b.pop("batch_id"), "batch_id"),
    (lambda b: b.update(batch_id="123"), "batch_id"),
    (lambda b: b.pop("developer_id"), "developer_id"),
    (lambda b: b.update(developer_id="dev 1"), "developer_id"),
    (lambda b: b.update(developer_id="d" * 129), "developer_id"),
    (lambda b: b.update(developer_id=""), "developer_id"),
    (lambda b: b.pop("sent_at"), "sent_at"),
    (lambda b: b.update(sent_at="2024-05-01T12:00:00"), "sent_at"),
    (lambda b: b.update(sent_at=1714564800), "sent_at"),
    (lambda b: b.pop("events"), "events"),
    (lambda b: b.update(events=[]), "events"),
    (lambda b: b.update(events={"0": {}}), "events"),
    (lambda b: b.update(schema_version=""), "schema_version"),
    (lambda b: b.update(client="vscode"), "client"),
    (lambda b: b.update(client={"editor": "e" * 65}), "client.editor"),
    (lambda b: b.update(client={"editor": "nul\u0000"}), "client.editor"),
])
def test_envelope_errors_are_400_naming_the_field(client, token, clean_db, mutate, field):  # type: ignore[no-untyped-def]
    body = batch([event()])
    mutate(body)
    r = post(client, token, body)
    assert r.status_code == 400, r.get_json()
    error = r.get_json()["error"]
    assert error["code"] == "invalid_envelope"
    assert field in [d["field"] for d in error["details"]]
    assert field in error["message"]
    nothing_written(clean_db)


def test_non_object_body_is_400(client, token, clean_db):  # type: ignore[no-untyped-def]
    r = post(client, token, [batch([event()])])
    assert r.status_code == 400
    assert r.get_json()["error"]["details"] == [{"field": "_schema", "message": "expected a JSON object"}]


def test_text_the_database_cannot_store_rejects_that_event_alone(client, token, clean_db):  # type: ignore[no-untyped-def]
    """Valid JSON that PostgreSQL's jsonb refuses (NUL, an unpaired surrogate, 1e400) must not fail the batch."""
    ok = event()
    nul = event(file="a\u0000b")
    surrogate = event(note="\ud800")
    bad_key = event(**{"k\u0000": 1})
    huge = event(big=1)
    raw = json.dumps(batch([ok, nul, surrogate, bad_key, huge])).replace('"big": 1', '"big": 1e400')
    r = client.post(URL, data=raw, headers=auth(token), content_type="application/json")
    assert r.status_code == 202
    body = r.get_json()
    assert [(e["index"], e["event_id"], e["code"], e["field"]) for e in body["errors"]] == [
        (1, nul["event_id"], "invalid_value", "payload.file"),
        (2, surrogate["event_id"], "invalid_value", "payload.note"),
        (3, bad_key["event_id"], "invalid_value", "payload"),
        (4, huge["event_id"], "invalid_value", "payload.big"),
    ]
    assert [str(r.event_id) for r in stored_events(clean_db)] == [ok["event_id"]]
    validated = query(clean_db, "SELECT details FROM audit_log WHERE step = 'validated'")[0][0]
    assert validated["rejected"] == 4


# ------------------------------------------------------------------------------------------------- correlation ids


def test_correlation_id_is_generated_when_absent(client, token, clean_db):  # type: ignore[no-untyped-def]
    r = post(client, token, batch([event()]))
    cid = r.get_json()["correlation_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", cid)
    assert r.headers["X-Correlation-ID"] == cid
    assert query(clean_db, "SELECT correlation_id FROM batches")[0][0] == cid


def test_incoming_correlation_id_is_honoured_echoed_and_stored(client, token, clean_db):  # type: ignore[no-untyped-def]
    cid = "vscode-req:42.a_b-c"
    body = batch([event()])
    r = post(client, token, body, headers={"X-Correlation-ID": cid})
    assert r.headers["X-Correlation-ID"] == cid
    assert r.get_json()["correlation_id"] == cid
    assert query(clean_db, "SELECT correlation_id FROM batches WHERE batch_id = :b", b=body["batch_id"]) == [(cid,)]
    assert {row[0] for row in query(clean_db, "SELECT correlation_id FROM audit_log")} == {cid}
    assert query(clean_db, "SELECT correlation_id FROM outbox") == [(cid,)]


@pytest.mark.parametrize("bad", ["has spaces", "x" * 129, "<script>"])
def test_an_unsafe_correlation_id_is_replaced(client, token, clean_db, bad):  # type: ignore[no-untyped-def]
    r = post(client, token, batch([event()]), headers={"X-Correlation-ID": bad})
    cid = r.get_json()["correlation_id"]
    assert cid != bad and re.fullmatch(r"[0-9a-f]{32}", cid)
    assert r.headers["X-Correlation-ID"] == cid


def test_every_error_carries_the_correlation_id(client, token, clean_db):  # type: ignore[no-untyped-def]
    cid = {"X-Correlation-ID": "err-1"}
    responses = [
        client.post(URL, json=batch([event()]), headers=cid),
        client.post(URL, data=b"{", headers={**auth(token), **cid}, content_type="application/json"),
        client.post(URL, data=b"{}", headers={**auth(token), **cid}, content_type="text/plain"),
        client.get(URL, headers={**auth(token), **cid}),
        client.get("/no/such/route", headers=cid),
        post(client, token, batch([event("file.teleport")]), headers=cid),
    ]
    assert [r.status_code for r in responses] == [401, 400, 415, 405, 404, 422]
    for r in responses:
        assert r.get_json()["correlation_id"] == "err-1"
        assert r.headers["X-Correlation-ID"] == "err-1"


# ------------------------------------------------------------------------------------------------ storage failures


def test_storage_unavailable_is_503_with_retry_after(app, token, clean_db):  # type: ignore[no-untyped-def]
    from app import create_app
    from core.breakers import breakers

    broken = create_app({"database_url": "postgresql://postgres@127.0.0.1:1/nowhere", "db_retry_budget_ms": 50})
    try:
        r = broken.test_client().post(URL, json=batch([event()]), headers=auth(token))
    finally:
        broken.extensions["devpulse.db"].dispose()
        breakers.reset("database")  # one breaker per process: do not leave it open for the next test
    assert r.status_code == 503
    assert r.get_json()["error"]["code"] == "storage_unavailable"
    assert int(r.headers["Retry-After"]) >= 1
    nothing_written(clean_db)


# ------------------------------------------------------------------------------------------------------ concurrency


def _run_in_threads(app, n: int, work) -> list[Any]:  # type: ignore[no-untyped-def]
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        c = app.test_client()
        barrier.wait()
        try:
            results[i] = work(i, c)
        except BaseException as exc:  # reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not [r for r in results if isinstance(r, BaseException)]
    return results


def test_the_same_batch_from_20_threads_is_stored_once(app, token, clean_db):  # type: ignore[no-untyped-def]
    body = batch([event() for _ in range(25)])

    def send(i: int, c: Any) -> tuple[int, dict[str, Any]]:
        r = post(c, token, dict(body, sent_at=iso(now() + timedelta(milliseconds=i))))
        return r.status_code, r.get_json()

    results = _run_in_threads(app, 20, send)
    statuses = sorted(s for s, _ in results)
    assert statuses == [200] * 19 + [202]
    assert {b["status"] for s, b in results if s == 200} == {"duplicate"}
    assert sum(b["accepted"] for _, b in results) == 25
    got = counts(clean_db)
    assert (got["batches"], got["raw_events"], got["outbox"]) == (1, 25, 1)


def test_overlapping_batches_from_20_threads_store_each_event_once(app, token, clean_db):  # type: ignore[no-untyped-def]
    rng = random.Random(7)
    pool = [event(event_id=str(uuid.uuid4())) for _ in range(60)]
    bodies = [batch(rng.sample(pool, 40)) for _ in range(20)]  # shuffled: each batch in its own order

    def send(i: int, c: Any) -> tuple[int, dict[str, Any]]:
        r = post(c, token, bodies[i])
        return r.status_code, r.get_json()

    results = _run_in_threads(app, 20, send)
    assert [s for s, _ in results] == [202] * 20, [b for _, b in results]
    for _, b in results:
        assert b["received"] == 40 == b["accepted"] + b["duplicates"] + b["rejected"]
    distinct = {e["event_id"] for body in bodies for e in body["events"]}
    assert sum(b["accepted"] for _, b in results) == len(distinct)
    rows = query(clean_db, "SELECT event_id, count(*) OVER (PARTITION BY event_id) FROM raw_events")
    assert {str(r[0]) for r in rows} == distinct
    assert len(rows) == len(distinct)
    # Each event is attributed to exactly the batch that reported it as accepted.
    accepted_total = query(clean_db, "SELECT sum(accepted), sum(duplicates) FROM batches")[0]
    assert tuple(accepted_total) == (len(distinct), 20 * 40 - len(distinct))
