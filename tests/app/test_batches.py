"""GET /api/workflow/batches/<batch_id>: a batch's lifecycle, for its developer or an admin."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text

from tests.support.factories import auth, batch, event, now

POST_URL = "/api/workflow/events/orchestrate"


def batch_url(batch_id: str) -> str:
    return f"/api/workflow/batches/{batch_id}"


def stored(client, token: str, events: list[dict[str, Any]], **kwargs: Any) -> tuple[dict[str, Any], Any]:  # type: ignore[no-untyped-def]
    body = batch(events, **kwargs)
    r = client.post(POST_URL, json=body, headers={**auth(token), "X-Correlation-ID": "post-corr"})
    assert r.status_code == 202
    return body, r


def test_developer_reads_own_batch_with_status_counts_and_timestamps(client, make_token, clean_db):  # type: ignore[no-untyped-def]
    token = make_token("dev-1")
    t = now()
    dup = event(ts=t - timedelta(minutes=9))
    events = [event(ts=t - timedelta(minutes=5)), dup, event(ts=t - timedelta(minutes=20)), dup,
              event("file.teleport")]
    body, _ = stored(client, token, events, sent_at=t)
    r = client.get(batch_url(body["batch_id"]), headers={**auth(token), "X-Correlation-ID": "get-corr"})
    assert r.status_code == 200
    view = r.get_json()
    assert view["batch_id"] == body["batch_id"]
    assert view["developer_id"] == "dev-1"
    assert view["status"] == "persisted"
    assert view["source"] == "native"
    assert (view["received"], view["accepted"], view["duplicates"], view["rejected"]) == (5, 3, 1, 1)
    assert view["correlation_id"] == "post-corr"
    assert view["correlation_id_of_request"] == "get-corr"
    assert r.headers["X-Correlation-ID"] == "get-corr"
    assert datetime.fromisoformat(view["sent_at"]) == t
    with clean_db.engine.connect() as conn:
        first, last, received_at = conn.execute(text(
            "SELECT min(corrected_ts), max(corrected_ts), min(received_at) FROM raw_events WHERE batch_id = :b"),
            {"b": body["batch_id"]}).one()
    assert datetime.fromisoformat(view["first_ts"]) == first
    assert datetime.fromisoformat(view["last_ts"]) == last
    assert datetime.fromisoformat(view["received_at"]) == received_at
    assert last - first == timedelta(minutes=15)
    assert view["dispatched_at"] is None and view["completed_at"] is None
    assert view["jobs"] == {}
    assert (view["replay_count"], view["dispatch_count"], view["last_error"]) == (0, 0, None)


def test_admin_can_read_any_batch(client, make_token, clean_db):  # type: ignore[no-untyped-def]
    dev, admin = make_token("dev-1"), make_token(None, admin=True)
    body, _ = stored(client, dev, [event()])
    r = client.get(batch_url(body["batch_id"]), headers=auth(admin))
    assert r.status_code == 200
    assert r.get_json()["developer_id"] == "dev-1"
    assert r.get_json()["accepted"] == 1


def test_developer_cannot_read_another_developers_batch(client, make_token, clean_db):  # type: ignore[no-untyped-def]
    owner, other = make_token("dev-1"), make_token("dev-2")
    body, _ = stored(client, owner, [event()])
    r = client.get(batch_url(body["batch_id"]), headers=auth(other))
    missing = client.get(batch_url(str(uuid.uuid4())), headers=auth(other))
    # Indistinguishable from a batch that does not exist.
    assert (r.status_code, missing.status_code) == (404, 404)
    assert r.get_json()["error"]["code"] == missing.get_json()["error"]["code"] == "batch_not_found"
    assert r.get_json()["error"]["details"] == [{"field": "batch_id", "message": "not found"}]
    assert "dev-1" not in r.get_data(as_text=True)


@pytest.mark.parametrize("bad", ["not-a-uuid", "1234", "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz"])
def test_invalid_batch_id_is_400_naming_batch_id(client, make_token, clean_db, bad):  # type: ignore[no-untyped-def]
    r = client.get(batch_url(bad), headers=auth(make_token("dev-1")))
    assert r.status_code == 400
    error = r.get_json()["error"]
    assert error["code"] == "invalid_batch_id"
    assert error["details"] == [{"field": "batch_id", "message": "not a UUID"}]
    assert r.get_json()["correlation_id"] == r.headers["X-Correlation-ID"]


def test_reading_a_batch_needs_a_token(client, make_token, clean_db):  # type: ignore[no-untyped-def]
    body, _ = stored(client, make_token("dev-1"), [event()])
    assert client.get(batch_url(body["batch_id"])).status_code == 401
    assert client.get(batch_url(body["batch_id"]), headers=auth("dp_unknown")).status_code == 401


def test_a_batch_of_only_duplicates_is_already_processed(client, make_token, clean_db):  # type: ignore[no-untyped-def]
    token = make_token("dev-1")
    ev = event()
    stored(client, token, [ev])
    body, _ = stored(client, token, [ev])
    view = client.get(batch_url(body["batch_id"]), headers=auth(token)).get_json()
    assert view["status"] == "processed"
    assert (view["received"], view["accepted"], view["duplicates"]) == (1, 0, 1)
    assert view["first_ts"] is None and view["last_ts"] is None


def test_a_rejected_batch_does_not_exist(client, make_token, clean_db):  # type: ignore[no-untyped-def]
    token = make_token("dev-1")
    body = batch([event("file.teleport")])
    assert client.post(POST_URL, json=body, headers=auth(token)).status_code == 422
    assert client.get(batch_url(body["batch_id"]), headers=auth(token)).status_code == 404
