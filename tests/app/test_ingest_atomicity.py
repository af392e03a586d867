"""POST /api/workflow/events/orchestrate against the real PostgreSQL.

A batch's rows are written together or not at all.
"""

from __future__ import annotations

import json

from sqlalchemy import text

from tests.support.database import TABLES
from tests.support.factories import auth, batch, event
from tests.support.ingest import URL, counts, counts_but_audit, edit, nothing_written, post, query


def test_batch_events_audit_and_outbox_are_written_together(client, token, clean_db):
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
    assert details["persisted"] == {"accepted": 2, "duplicates": 1, "developer_id": "dev-1"}
    # Every record names the developer: a batch id is unique per developer only.
    assert {d["developer_id"] for d in details.values()} == {"dev-1"}
    outbox = query(clean_db, "SELECT batch_id, correlation_id, status, is_replay FROM outbox")
    assert [(str(o[0]), o[1], o[2], o[3]) for o in outbox] == [(bid, "corr-atomic", "pending", False)]
    batch_row = query(clean_db, "SELECT status, received, accepted, duplicates, rejected, correlation_id "
                                "FROM batches")[0]
    assert tuple(batch_row) == ("persisted", 4, 2, 1, 1, "corr-atomic")


def _four_xx_cases(client, token, db):
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


def test_no_4xx_stores_anything_and_each_but_401_leaves_one_audit_record(client, token, clean_db):
    cases = _four_xx_cases(client, token, clean_db)
    first = next(cases)  # stores a batch, then sends the conflicting one
    before = counts_but_audit(clean_db)
    assert before["batches"] == 1
    seen = []
    for status, r in [first, *cases]:
        assert r.status_code == status, (status, r.get_json())
        assert r.get_json()["correlation_id"] == r.headers["X-Correlation-ID"]
        assert counts_but_audit(clean_db) == before, status
        records = query(clean_db, "SELECT step, details FROM audit_log WHERE correlation_id = :c ORDER BY id",
                        c=r.headers["X-Correlation-ID"])
        if status == 401:  # no developer to record: the access line is its trace
            assert records == [], status
        else:
            [(step, details)] = records
            assert step == ("batch_conflict" if status == 409 else "refused"), status
            assert details["developer_id"] == "dev-1"
            if step == "refused":
                code = "no_valid_events" if status == 422 else r.get_json()["error"]["code"]  # the 422 mirrors a 202
                assert (details["status"], details["code"]) == (status, code)
        seen.append(status)
    assert seen == [409, 400, 400, 401, 403, 413, 415, 422]


def test_a_failure_inside_the_transaction_leaves_nothing_behind(client, token, clean_db):
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
