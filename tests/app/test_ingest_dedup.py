"""POST /api/workflow/events/orchestrate against the real PostgreSQL.

Deduplication of events (across and inside batches) and of whole batches.
"""

from __future__ import annotations

from datetime import timedelta

from tests.support.factories import batch, event, iso, now
from tests.support.ingest import counts, counts_but_audit, edit, nothing_written, post, query, stored_events

# ------------------------------------------------------------------------------------------------ event-level dedup


def test_event_stored_by_an_earlier_batch_is_a_duplicate(client, token, clean_db):
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
    assert [d[0] for d in audit] == [{"event_id": b["event_id"], "original_batch_id": first["batch_id"],
                                      "developer_id": "dev-1"}]
    assert query(clean_db, "SELECT accepted, duplicates FROM batches WHERE batch_id = :b", b=second["batch_id"]) \
        == [(1, 1)]


def test_event_repeated_inside_one_batch_is_stored_once(client, token, clean_db):
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
    assert [d[0] for d in audit] == [{"event_id": a["event_id"], "original_batch_id": body_sent["batch_id"],
                                      "developer_id": "dev-1"}]


def test_batch_of_only_duplicates_stores_nothing_new(client, token, clean_db):
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


def test_resending_a_batch_with_another_sent_at_is_a_200_duplicate(client, token, clean_db):
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
    # The first answer again (its counts), marked as a replay of it.
    assert (got["received"], got["accepted"], got["duplicates"], got["rejected"]) == (2, 2, 0, 0)
    assert (got["replay_of_first_reply"], got["original_status"]) == (True, "accepted")
    assert len(got["duplicate_event_ids"]) == got["duplicates"]  # the list matches the count
    assert got["original_correlation_id"] == "first-send"
    assert counts_but_audit(clean_db) == {t: n for t, n in before.items() if t != "audit_log"}
    assert stored_events(clean_db) == stored_before


def test_same_batch_id_with_other_content_is_409(client, token, clean_db):
    body = batch([event()])
    assert post(client, token, body).status_code == 202
    before = counts(clean_db)
    r = post(client, token, dict(body, events=[event()]))
    assert r.status_code == 409
    assert r.get_json()["error"]["code"] == "batch_conflict"
    assert r.get_json()["error"]["details"][0]["field"] == "batch_id"
    assert counts_but_audit(clean_db) == {t: n for t, n in before.items() if t != "audit_log"}


def test_resending_a_rejected_batch_is_rejected_again(client, token, clean_db):
    body = batch([event("file.teleport")])
    assert post(client, token, body).status_code == 422
    assert post(client, token, body).status_code == 422
    nothing_written(clean_db)


# ------------------------------------------------------------------------------------------- ids are per developer


def test_another_developers_event_and_batch_ids_are_not_duplicates(client, make_token, clean_db):
    """Developer B posting A's event ids and batch id first neither drops A's events nor tells either of them."""
    token_a, token_b = make_token("dev-1"), make_token("dev-2")
    a1, a2 = event(), edit()
    body_a = batch([a1, a2], developer_id="dev-1")
    # B (who learned the ids somehow) posts them first, with other content.
    b1, b2 = dict(a1, payload={"file": "b.py"}), dict(a2, payload={**a2["payload"], "file": "b.py", "lines_added": 9})
    body_b = batch([b1, b2], developer_id="dev-2", batch_id=body_a["batch_id"])
    for token, body in ((token_b, body_b), (token_a, body_a)):
        r = post(client, token, body)
        assert r.status_code == 202, r.get_json()  # not 409 batch_conflict, not 200 duplicate
        got = r.get_json()
        assert (got["status"], got["accepted"], got["duplicates"], got["duplicate_event_ids"]) == \
            ("accepted", 2, 0, [])

    rows = query(clean_db, "SELECT developer_id, event_id, batch_id, raw FROM raw_events ORDER BY developer_id, seq")
    assert [(r.developer_id, str(r.event_id), str(r.batch_id)) for r in rows] == [
        ("dev-1", a1["event_id"], body_a["batch_id"]), ("dev-1", a2["event_id"], body_a["batch_id"]),
        ("dev-2", a1["event_id"], body_a["batch_id"]), ("dev-2", a2["event_id"], body_a["batch_id"])]
    assert [r.raw for r in rows[:2]] == [a1, a2]  # A's own content, not B's
    assert query(clean_db, "SELECT developer_id, accepted, duplicates, status FROM batches ORDER BY developer_id") \
        == [("dev-1", 2, 0, "persisted"), ("dev-2", 2, 0, "persisted")]
    # Each batch goes to the pipeline on its own.
    assert query(clean_db, "SELECT developer_id, batch_id::text FROM outbox ORDER BY developer_id") == [
        ("dev-1", body_a["batch_id"]), ("dev-2", body_a["batch_id"])]
    assert query(clean_db, "SELECT count(*) FROM audit_log WHERE step = 'deduplicated'") == [(0,)]


def test_the_same_developer_still_deduplicates_when_another_uses_the_ids(client, make_token, clean_db):
    token_a, token_b = make_token("dev-1"), make_token("dev-2")
    a1 = event()
    body_a = batch([a1], developer_id="dev-1")
    body_b = batch([a1], developer_id="dev-2", batch_id=body_a["batch_id"])
    assert post(client, token_a, body_a).status_code == 202
    assert post(client, token_b, body_b).status_code == 202
    before = counts(clean_db)

    # Each developer's resend of its own batch: 200 duplicate; other content under its own id: 409.
    for token, body in ((token_a, body_a), (token_b, body_b)):
        r = post(client, token, dict(body, sent_at=iso(now() + timedelta(seconds=5))))
        assert (r.status_code, r.get_json()["status"]) == (200, "duplicate")
        conflict = post(client, token, dict(body, events=[event()]))
        assert (conflict.status_code, conflict.get_json()["error"]["code"]) == (409, "batch_conflict")
    assert counts_but_audit(clean_db) == {t: n for t, n in before.items() if t != "audit_log"}

    # An event A stored before is A's duplicate (its original batch is A's), whatever B stored under that id.
    later = batch([a1, event()], developer_id="dev-1")
    body = post(client, token_a, later).get_json()
    assert (body["accepted"], body["duplicates"], body["duplicate_event_ids"]) == (1, 1, [a1["event_id"]])
    audit = query(clean_db, "SELECT details FROM audit_log WHERE step = 'deduplicated'")
    assert [d[0] for d in audit] == [{"event_id": a1["event_id"], "original_batch_id": body_a["batch_id"],
                                      "developer_id": "dev-1"}]
    assert query(clean_db, "SELECT count(*) FROM raw_events WHERE event_id = :e", e=a1["event_id"]) == [(2,)]


def test_a_resend_of_a_partly_rejected_batch_replays_its_duplicates_and_rejections(client, token, clean_db):
    ok, again, bad = event(), event(), {"event_id": "not-a-uuid", "type": "file.save"}
    body = batch([ok, again, bad, dict(ok)])
    first = post(client, token, body).get_json()
    assert (first["accepted"], first["duplicates"], first["rejected"]) == (2, 1, 1)
    got = post(client, token, dict(body, sent_at=iso(now() + timedelta(seconds=5)))).get_json()
    assert got["status"] == "duplicate" and got["replay_of_first_reply"] is True
    # The first answer again: its counts, and a duplicate list that matches its count.
    assert (got["received"], got["accepted"], got["duplicates"], got["rejected"]) == (4, 2, 1, 1)
    assert got["duplicate_event_ids"] == first["duplicate_event_ids"] == [ok["event_id"]]
    assert [(e["index"], e["field"]) for e in got["errors"]] == [(e["index"], e["field"]) for e in first["errors"]]
