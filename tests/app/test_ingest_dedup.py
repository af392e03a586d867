"""POST /api/workflow/events/orchestrate against the real PostgreSQL.

Deduplication of events (across and inside batches) and of whole batches.
"""

from __future__ import annotations

from datetime import timedelta

from tests.support.factories import batch, event, iso, now
from tests.support.ingest import counts, edit, nothing_written, post, query, stored_events

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
