"""`flask --app app tokens create <developer_id> [--admin]` and `tokens revoke`, through Flask's CLI runner."""

from __future__ import annotations

import hashlib
import re

import pytest
from sqlalchemy import text

from app.auth import clear_token_cache
from tests.support.factories import auth, batch, event

POST_URL = "/api/workflow/events/orchestrate"


def token_rows(db) -> list[dict]:
    with db.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text("SELECT * FROM api_tokens ORDER BY id"))]


def all_token_text(db) -> str:
    with db.engine.connect() as conn:
        return " ".join(conn.execute(text("SELECT row_to_json(t)::text FROM api_tokens t")).scalars())


def create(app, *args: str) -> str:
    result = app.test_cli_runner().invoke(args=["tokens", "create", *args])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1  # the token, printed once, and nothing else
    return lines[0]


def test_create_prints_a_token_once_and_stores_only_its_hash(app, clean_db):
    token = create(app, "dev-9")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", token)
    rows = token_rows(clean_db)
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert (rows[0]["developer_id"], rows[0]["is_admin"], rows[0]["revoked_at"], rows[0]["expires_at"]) == (
        "dev-9", False, None, None)
    assert token not in all_token_text(clean_db)
    assert token.replace("-", "") not in all_token_text(clean_db)


def test_created_token_works_for_its_developer_only(app, client, clean_db):
    token = create(app, "dev-9")
    own = client.post(POST_URL, json=batch([event()], developer_id="dev-9"), headers=auth(token))
    other = client.post(POST_URL, json=batch([event()], developer_id="dev-1"), headers=auth(token))
    assert (own.status_code, other.status_code) == (202, 403)


def test_admin_token(app, client, clean_db):
    admin = create(app, "--admin")
    row = token_rows(clean_db)[0]
    assert (row["developer_id"], row["is_admin"]) == (None, True)
    assert row["token_hash"] == hashlib.sha256(admin.encode()).hexdigest()
    assert admin not in all_token_text(clean_db)
    dev = create(app, "dev-9")
    body = batch([event()], developer_id="dev-9")
    assert client.post(POST_URL, json=body, headers=auth(dev)).status_code == 202
    r = client.get(f"/api/workflow/batches/{body['batch_id']}", headers=auth(admin))
    assert r.status_code == 200 and r.get_json()["developer_id"] == "dev-9"
    other = batch([event()], developer_id="dev-3")
    assert client.post(POST_URL, json=other, headers=auth(admin)).status_code == 403  # admin is not ingest


def test_ingest_for_all_token(app, client, clean_db):
    importer = create(app, "--ingest-for-all", "--label", "importer")
    row = token_rows(clean_db)[0]
    assert (row["developer_id"], row["is_admin"], row["ingest_for_all"]) == (None, False, True)
    for developer_id in ("dev-3", "dev-4"):
        body = batch([event()], developer_id=developer_id)
        assert client.post(POST_URL, json=body, headers=auth(importer)).status_code == 202
    assert create(app, "dev-5") and token_rows(clean_db)[1]["ingest_for_all"] is False  # off by default
    listing = app.test_cli_runner().invoke(args=["tokens", "list"]).output
    assert "ingest_for_all" in listing.splitlines()[0]


def test_every_token_is_new(app, clean_db):
    tokens = {create(app, "dev-9") for _ in range(3)}
    assert len(tokens) == 3
    assert len({r["token_hash"] for r in token_rows(clean_db)}) == 3


@pytest.mark.parametrize("args", [["bad id"], ["x" * 129], []])
def test_invalid_developer_id_creates_nothing(app, clean_db, args):
    result = app.test_cli_runner().invoke(args=["tokens", "create", *args])
    assert result.exit_code == 2
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-4", result.output)
    assert token_rows(clean_db) == []


def test_revoke(app, client, clean_db):
    token = create(app, "dev-9")
    result = app.test_cli_runner().invoke(args=["tokens", "revoke", token])
    assert (result.exit_code, result.output.strip()) == (0, "revoked")
    assert token_rows(clean_db)[0]["revoked_at"] is not None
    clear_token_cache()
    r = client.post(POST_URL, json=batch([event()], developer_id="dev-9"), headers=auth(token))
    assert r.status_code == 401
    unknown = app.test_cli_runner().invoke(args=["tokens", "revoke", "dp_nope"])
    assert unknown.exit_code == 1 and "no such token" in unknown.output


def test_expiring_tokens_list_and_revoke_by_id(app, clean_db):
    from datetime import UTC, datetime, timedelta

    token = create(app, "dev-9", "--expires-in", "90d", "--label", "laptop")
    [row] = token_rows(clean_db)
    assert abs(row["expires_at"] - (datetime.now(UTC) + timedelta(days=90))) < timedelta(minutes=1)
    bad = app.test_cli_runner().invoke(args=["tokens", "create", "dev-9", "--expires-in", "soon"])
    assert bad.exit_code != 0 and "--expires-in" in bad.output

    client = app.test_client()
    clear_token_cache()
    assert client.get("/api/developers/dev-9/metrics", headers=auth(token)).status_code == 200
    listed = app.test_cli_runner().invoke(args=["tokens", "list"])
    assert listed.exit_code == 0, listed.output
    assert token not in listed.output and row["token_hash"] not in listed.output  # never the token
    [line] = [x for x in listed.output.splitlines() if x.startswith(str(row["id"]))]
    assert "dev-9" in line and "laptop" in line
    assert token_rows(clean_db)[0]["last_used_at"] is not None

    revoked = app.test_cli_runner().invoke(args=["tokens", "revoke", "--id", str(row["id"])])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    clear_token_cache()
    assert client.get("/api/developers/dev-9/metrics", headers=auth(token)).status_code == 401
    missing = app.test_cli_runner().invoke(args=["tokens", "revoke", "--id", "999999"])
    assert missing.exit_code != 0 and "no such token" in missing.output
