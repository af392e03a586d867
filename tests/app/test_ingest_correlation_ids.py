"""POST /api/workflow/events/orchestrate against the real PostgreSQL.

Correlation ids (generated, honoured, echoed, stored).
"""

from __future__ import annotations

import re

import pytest

from tests.support.factories import auth, batch, event
from tests.support.ingest import URL, post, query


def test_correlation_id_is_generated_when_absent(client, token, clean_db):
    r = post(client, token, batch([event()]))
    cid = r.get_json()["correlation_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", cid)
    assert r.headers["X-Correlation-ID"] == cid
    assert query(clean_db, "SELECT correlation_id FROM batches")[0][0] == cid


def test_incoming_correlation_id_is_honoured_echoed_and_stored(client, token, clean_db):
    cid = "vscode-req:42.a_b-c"
    body = batch([event()])
    r = post(client, token, body, headers={"X-Correlation-ID": cid})
    assert r.headers["X-Correlation-ID"] == cid
    assert r.get_json()["correlation_id"] == cid
    assert query(clean_db, "SELECT correlation_id FROM batches WHERE batch_id = :b", b=body["batch_id"]) == [(cid,)]
    assert {row[0] for row in query(clean_db, "SELECT correlation_id FROM audit_log")} == {cid}
    assert query(clean_db, "SELECT correlation_id FROM outbox") == [(cid,)]


@pytest.mark.parametrize("bad", ["has spaces", "x" * 129, "<script>"])
def test_an_unsafe_correlation_id_is_replaced(client, token, clean_db, bad):
    r = post(client, token, batch([event()]), headers={"X-Correlation-ID": bad})
    cid = r.get_json()["correlation_id"]
    assert cid != bad and re.fullmatch(r"[0-9a-f]{32}", cid)
    assert r.headers["X-Correlation-ID"] == cid


def test_every_error_carries_the_correlation_id(client, token, clean_db):
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
