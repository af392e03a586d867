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


def test_admin_token_may_post_for_any_developer(client, make_token, clean_db):
    admin = make_token(None, admin=True)
    body = batch([event()], developer_id="dev-7")
    assert post(client, admin, body).status_code == 202
    assert query(clean_db, "SELECT developer_id FROM batches")[0][0] == "dev-7"
    assert query(clean_db, "SELECT developer_id FROM raw_events")[0][0] == "dev-7"
