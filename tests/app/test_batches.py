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


def stored(client, token: str, events: list[dict[str, Any]], **kwargs: Any) -> tuple[dict[str, Any], Any]:
    body = batch(events, **kwargs)
    r = client.post(POST_URL, json=body, headers={**auth(token), "X-Correlation-ID": "post-corr"})
    assert r.status_code == 202
    return body, r


def test_developer_reads_own_batch_with_status_counts_and_timestamps(client, make_token, clean_db):
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


def test_admin_can_read_any_batch(client, make_token, clean_db):
    dev, admin = make_token("dev-1"), make_token(None, admin=True)
    body, _ = stored(client, dev, [event()])
    r = client.get(batch_url(body["batch_id"]), headers=auth(admin))
    assert r.status_code == 200
    assert r.get_json()["developer_id"] == "dev-1"
    assert r.get_json()["accepted"] == 1


def test_developer_cannot_read_another_developers_batch(client, make_token, clean_db):
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
def test_invalid_batch_id_is_400_naming_batch_id(client, make_token, clean_db, bad):
    r = client.get(batch_url(bad), headers=auth(make_token("dev-1")))
    assert r.status_code == 400
    error = r.get_json()["error"]
    assert error["code"] == "invalid_batch_id"
    assert error["details"] == [{"field": "batch_id", "message": "not a UUID"}]
    assert r.get_json()["correlation_id"] == r.headers["X-Correlation-ID"]


def test_reading_a_batch_needs_a_token(client, make_token, clean_db):
    body, _ = stored(client, make_token("dev-1"), [event()])
    assert client.get(batch_url(body["batch_id"])).status_code == 401
    assert client.get(batch_url(body["batch_id"]), headers=auth("dp_unknown")).status_code == 401


def test_a_batch_of_only_duplicates_is_already_processed(client, make_token, clean_db):
    token = make_token("dev-1")
    ev = event()
    stored(client, token, [ev])
    body, _ = stored(client, token, [ev])
    view = client.get(batch_url(body["batch_id"]), headers=auth(token)).get_json()
    assert view["status"] == "processed"
    assert (view["received"], view["accepted"], view["duplicates"]) == (1, 0, 1)
    assert view["first_ts"] is None and view["last_ts"] is None


def test_a_rejected_batch_does_not_exist(client, make_token, clean_db):
    token = make_token("dev-1")
    body = batch([event("file.teleport")])
    assert client.post(POST_URL, json=body, headers=auth(token)).status_code == 422
    assert client.get(batch_url(body["batch_id"]), headers=auth(token)).status_code == 404


# -------------------------------------------------------------------------- a batch id used by several developers


def shared_batch_id(client, make_token) -> tuple[str, str, str, dict[str, Any], dict[str, Any]]:
    """dev-1 and dev-2 each store a batch under the same id (one event vs two): (id, token 1, token 2, bodies)."""
    one, two = make_token("dev-1"), make_token("dev-2")
    first, _ = stored(client, one, [event()], developer_id="dev-1")
    second, _ = stored(client, two, [event(), event()], developer_id="dev-2", batch_id=first["batch_id"])
    return first["batch_id"], one, two, first, second


def test_each_developer_reads_its_own_batch_of_a_shared_id(client, make_token, clean_db):
    bid, one, two, first, second = shared_batch_id(client, make_token)
    for token, developer, body in ((one, "dev-1", first), (two, "dev-2", second)):
        view = client.get(batch_url(bid), headers=auth(token)).get_json()
        assert (view["batch_id"], view["developer_id"], view["accepted"]) == (bid, developer, len(body["events"]))
        events = client.get(f"{batch_url(bid)}/events", headers=auth(token)).get_json()["events"]
        assert [e["event_id"] for e in events] == [e["event_id"] for e in body["events"]]
        # Naming the other developer changes nothing: it is not this token's to read.
        other = "dev-2" if developer == "dev-1" else "dev-1"
        r = client.get(f"{batch_url(bid)}?developer_id={other}", headers=auth(token))
        assert (r.status_code, r.get_json()["error"]["code"]) == (404, "batch_not_found")
        assert other not in r.get_data(as_text=True)
        assert client.get(f"{batch_url(bid)}?developer_id={developer}", headers=auth(token)).status_code == 200
    # A developer who uses no batch of that id still learns nothing.
    r = client.get(batch_url(bid), headers=auth(make_token("dev-3")))
    assert (r.status_code, r.get_json()["error"]["code"]) == (404, "batch_not_found")
    assert "dev-1" not in r.get_data(as_text=True) and "dev-2" not in r.get_data(as_text=True)


@pytest.mark.parametrize("suffix", ["", "/audit", "/events"])
def test_admin_lookup_of_a_shared_batch_id_is_409_naming_the_developers(client, make_token, clean_db, suffix):
    bid, _, _, first, second = shared_batch_id(client, make_token)
    admin = make_token(None, admin=True)
    r = client.get(batch_url(bid) + suffix, headers=auth(admin))
    assert r.status_code == 409
    error = r.get_json()["error"]
    assert error["code"] == "ambiguous_batch_id"
    assert "dev-1" in error["message"] and "dev-2" in error["message"] and "developer_id" in error["message"]
    assert error["details"] == [{"field": "developer_id", "message": "one of: dev-1, dev-2"}]

    # ?developer_id= chooses one; a developer who has no batch of that id is a 404.
    for developer, body in (("dev-1", first), ("dev-2", second)):
        chosen = client.get(f"{batch_url(bid)}{suffix}?developer_id={developer}", headers=auth(admin))
        assert chosen.status_code == 200, chosen.get_json()
        got = chosen.get_json()
        if suffix == "/events":
            assert [e["event_id"] for e in got["events"]] == [e["event_id"] for e in body["events"]]
        elif suffix == "/audit":
            assert got["developer_id"] == developer
            assert [rec["step"] for rec in got["records"]] == ["received", "validated", "persisted"]
            assert {rec["details"]["developer_id"] for rec in got["records"]} == {developer}
            persisted = got["records"][-1]["details"]
            assert persisted["accepted"] == len(body["events"])
        else:
            assert (got["developer_id"], got["accepted"]) == (developer, len(body["events"]))
    missing = client.get(f"{batch_url(bid)}{suffix}?developer_id=dev-9", headers=auth(admin))
    assert (missing.status_code, missing.get_json()["error"]["code"]) == (404, "batch_not_found")


def test_admin_audit_trail_of_a_shared_id_keeps_to_one_developer(client, make_token, clean_db):
    """Even when both batches carry the same correlation id, each trail holds its own developer's records only."""
    bid, _, _, _, _ = shared_batch_id(client, make_token)  # both posted with X-Correlation-ID: post-corr
    admin = make_token(None, admin=True)
    trails = {d: client.get(f"{batch_url(bid)}/audit?developer_id={d}", headers=auth(admin)).get_json()["records"]
              for d in ("dev-1", "dev-2")}
    assert len(trails["dev-1"]) == len(trails["dev-2"]) == 3
    assert not {r["id"] for r in trails["dev-1"]} & {r["id"] for r in trails["dev-2"]}
    assert {r["correlation_id"] for r in trails["dev-1"] + trails["dev-2"]} == {"post-corr"}
