"""POST /api/workflow/events/orchestrate against the real PostgreSQL.

Authentication and authorisation (401 / 403, nothing written).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.auth import clear_token_cache
from models.tokens import create_token, revoke_token
from tests.support.factories import batch, event
from tests.support.ingest import URL, counts, nothing_written, post, query


def test_missing_token_is_401_and_writes_nothing(client, clean_db):
    r = post(client, None, batch([event()]))
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "missing_token"
    assert r.get_json()["error"]["details"] == [{"field": "Authorization", "message": "missing"}]
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.get_json()["correlation_id"] == r.headers["X-Correlation-ID"]
    nothing_written(clean_db)


@pytest.mark.parametrize("header", ["Bearer dp_not-a-real-token", "Bearer", "Token abc", "Basic !!!"])
def test_unknown_or_malformed_token_is_401(client, token, clean_db, header):
    r = client.post(URL, json=batch([event()]), headers={"Authorization": header})
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "invalid_token"
    nothing_written(clean_db)


def test_revoked_token_is_401(client, clean_db):
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


def test_expired_token_is_401(client, clean_db):
    with clean_db.transaction() as s:
        expired = create_token(s, "dev-1", expires_at=datetime.now(UTC) - timedelta(seconds=1))
        valid = create_token(s, "dev-1", expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert post(client, expired, batch([event()])).status_code == 401
    assert post(client, valid, batch([event()])).status_code == 202


def test_developer_token_posting_for_another_developer_is_403_and_writes_nothing(client, token, clean_db):
    r = post(client, token, batch([event()], developer_id="dev-2"))
    assert r.status_code == 403
    body = r.get_json()
    assert body["error"]["code"] == "forbidden_developer"
    assert body["error"]["details"] == [{"field": "developer_id", "message": "does not match the token's developer"}]
    nothing_written(clean_db)


def test_an_admin_token_alone_may_not_post_events_for_a_developer(client, make_token, clean_db):
    """One rule for native and WakaTime ingest: a token posts for its own developer; admin rights do not widen it."""
    admin = make_token(None, admin=True)
    r = post(client, admin, batch([event()], developer_id="dev-7"))
    assert r.status_code == 403
    error = r.get_json()["error"]
    assert error["code"] == "forbidden_developer"
    assert error["details"] == [{"field": "developer_id", "message": "does not match the token's developer"}]
    assert "--ingest-for-all" in error["message"]
    nothing_written(clean_db)


@pytest.mark.parametrize("admin", [False, True])
def test_a_token_created_to_ingest_for_all_may_post_for_any_developer(client, clean_db, admin):
    with clean_db.transaction() as s:
        importer = create_token(s, None, admin=admin, ingest_for_all=True)
    for developer_id in ("dev-7", "dev-8"):
        assert post(client, importer, batch([event()], developer_id=developer_id)).status_code == 202
    assert sorted(r[0] for r in query(clean_db, "SELECT developer_id FROM raw_events")) == ["dev-7", "dev-8"]
    if not admin:  # ingesting for everyone is not reading anyone's data
        assert client.get("/api/developers/dev-7/metrics", headers={"Authorization": f"Bearer {importer}"}
                          ).status_code == 403
