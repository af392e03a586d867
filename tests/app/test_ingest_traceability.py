"""Every ingest request on the record (issue 18): one JSON access line each, an audit record for every outcome,
audit records at the time of their own step, the first reply replayed to a resend, and event types a newer
minor adds stored unprocessed instead of refused."""

from __future__ import annotations

import io
import json
import logging
import os
from datetime import datetime

import pytest

from core import logging as json_logging
from tests.support.factories import batch, event, iso, now
from tests.support.ingest import URL, edit, post, query, stored_events


def test_every_request_gets_one_json_access_line_with_correlation_id_developer_status_counts_duration(
        client, token, clean_db):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(json_logging.JsonFormatter())
    logger = logging.getLogger("devpulse.access")
    saved = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        body = batch([edit(), event("file.teleport")])
        accepted = post(client, token, body, headers={"X-Correlation-ID": "acc-1"})
        resend = post(client, token, dict(body, sent_at=iso(now())), headers={"X-Correlation-ID": "acc-2"})
        unauthorized = post(client, "dp_wrong", batch([edit()]), headers={"X-Correlation-ID": "acc-3"})
        rejected = post(client, token, batch([event("file.teleport")]), headers={"X-Correlation-ID": "acc-4"})
        health = client.get("/healthz", headers={"X-Correlation-ID": "acc-5"})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r.status_code for r in (accepted, resend, unauthorized, rejected, health)] == [202, 200, 401, 422, 200]
    assert [line["correlation_id"] for line in lines] == ["acc-1", "acc-2", "acc-3", "acc-4", "acc-5"]
    assert [line["status"] for line in lines] == [202, 200, 401, 422, 200]
    first = lines[0]
    assert (first["developer_id"], first["batch_id"], first["method"], first["route"]) == \
        ("dev-1", body["batch_id"], "POST", URL)
    assert first["counts"] == {"received": 2, "accepted": 1, "duplicates": 0, "rejected": 1,
                               "stored_unprocessed": 0}
    assert isinstance(first["duration_ms"], float) and first["duration_ms"] > 0
    assert lines[1]["counts"]["duplicates"] == 2 and lines[1]["developer_id"] == "dev-1"
    assert (lines[2]["developer_id"], lines[2]["error_code"]) == (None, "invalid_token")
    assert (lines[3]["error_code"], lines[3]["counts"]["rejected"]) == ("no_valid_events", 1)


def test_the_deployment_files_leave_the_access_log_to_the_app():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for name in ("Procfile", "Dockerfile", "docker-compose.yml"):
        assert "access-logfile" not in (root / name).read_text(), name


def test_a_resend_is_audited_and_references_the_original_batch_and_correlation_id(client, token, clean_db):
    body = batch([edit()])
    assert post(client, token, body, headers={"X-Correlation-ID": "first"}).status_code == 202
    assert post(client, token, dict(body, sent_at=iso(now())), headers={"X-Correlation-ID": "again"}).status_code \
        == 200
    [(correlation_id, batch_id, details)] = query(
        clean_db, "SELECT correlation_id, batch_id::text, details FROM audit_log WHERE step = 'duplicate_batch'")
    assert (correlation_id, batch_id) == ("again", body["batch_id"])
    assert details["original_correlation_id"] == "first" and details["developer_id"] == "dev-1"
    assert details["first_reply_replayed"] is True


def test_a_rate_limited_request_is_audited(app, redis_url, make_token, clean_db):
    from app import create_app

    limited = create_app({"database_url": os.environ["DATABASE_URL"], "redis_url": redis_url,
                          "rate_limit_per_second": 1, "rate_limit_burst": 2})
    try:
        token = make_token("dev-1")
        client = limited.test_client()
        statuses = [post(client, token, batch([edit()]), headers={"X-Correlation-ID": f"rl-{i}"}).status_code
                    for i in range(5)]
    finally:
        limited.extensions["devpulse.db"].dispose()
    assert 429 in statuses
    refused = query(clean_db, "SELECT correlation_id, details FROM audit_log WHERE step = 'refused' ORDER BY id")
    assert [c for c, _ in refused] == [f"rl-{i}" for i, s in enumerate(statuses) if s == 429]
    assert {(d["status"], d["code"], d["developer_id"]) for _, d in refused} == {(429, "rate_limited", "dev-1")}


def test_ingest_audit_records_carry_the_time_of_their_own_step(client, token, clean_db):
    body = batch([edit(), edit()])
    assert post(client, token, body).status_code == 202
    rows = query(clean_db, "SELECT step, created_at FROM audit_log WHERE batch_id = :b ORDER BY id",
                 b=body["batch_id"])
    times = dict(rows)
    [(received_at,)] = query(clean_db, "SELECT received_at FROM batches WHERE batch_id = :b", b=body["batch_id"])
    assert [step for step, _ in rows] == ["received", "validated", "persisted"]
    assert times["received"] == received_at  # the request's arrival
    assert times["received"] < times["validated"] < times["persisted"]


def test_a_resend_gets_the_first_reply_again_with_its_errors(client, token, clean_db):
    good, bad = edit(), event("file.teleport")
    body = batch([good, bad])
    first = post(client, token, body, headers={"X-Correlation-ID": "first"})
    assert first.status_code == 202
    original = first.get_json()
    assert original["status"] == "partially_accepted" and original["rejected"] == 1
    again = post(client, token, dict(body, sent_at=iso(now())), headers={"X-Correlation-ID": "lost-reply"})
    assert again.status_code == 200
    got = again.get_json()
    assert (got["status"], got["replay_of_first_reply"], got["original_status"]) == \
        ("duplicate", True, "partially_accepted")
    assert (got["correlation_id"], got["original_correlation_id"]) == ("lost-reply", "first")
    for key in ("received", "accepted", "duplicates", "rejected", "errors", "duplicate_event_ids"):
        assert got[key] == original[key], key
    assert got["errors"][0]["code"] == "unknown_event_type" and got["errors"][0]["event_id"] == bad["event_id"]
    assert datetime.fromisoformat(got["original_received_at"])


def test_an_event_type_a_newer_minor_adds_is_stored_unprocessed(client, token, clean_db):
    new_type = event("refactor.applied", version="1.2", symbol="f")
    known = edit(version="1.2")
    r = post(client, token, batch([known, new_type]))
    assert r.status_code == 202, r.get_json()
    got = r.get_json()
    assert (got["status"], got["accepted"], got["rejected"], got["stored_unprocessed"]) == ("accepted", 2, 0, 1)
    assert {str(e.event_id) for e in stored_events(clean_db)} == {known["event_id"], new_type["event_id"]}
    [(details,)] = query(clean_db, "SELECT details FROM audit_log WHERE step = 'persisted'")
    assert details["stored_unprocessed"] == 1


@pytest.mark.parametrize(("version", "type_"), [("1.1", "refactor.applied"), ("1.0", "refactor.applied"),
                                                ("1.2", "ai.completion"), ("1.2", "Not A Type!")])
def test_unknown_types_under_a_known_minor_stay_rejected(client, token, clean_db, version, type_):
    r = post(client, token, batch([event(type_, version=version)]))
    assert r.status_code == 422
    assert r.get_json()["errors"][0]["code"] == "unknown_event_type"
