"""models.ingest.persist_batch on the real PostgreSQL, inside a rolled-back transaction where possible."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from models.ingest import PersistOutcome, PreparedBatch, PreparedEvent, Rejection, persist_batch
from models.tables import Batch, RawEvent

RECEIVED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def pevent(seq: int, *, event_id: uuid.UUID | None = None, minutes_ago: int = 1) -> PreparedEvent:
    eid = event_id or uuid.uuid4()
    ts = RECEIVED_AT - timedelta(minutes=minutes_ago)
    raw = {"event_id": str(eid), "type": "file.save", "timestamp": ts.isoformat(), "payload": {"file": "a.py"}}
    return PreparedEvent(event_id=eid, seq=seq, type="file.save", schema_version="1.1", session_id=None,
                         client_ts=ts, client_utc_offset_minutes=0, corrected_ts=ts, raw=raw)


def prepared(events: list[PreparedEvent], *, batch_id: uuid.UUID | None = None, content_hash: str = "h" * 64,
             rejections: list[Rejection] | None = None, in_batch_duplicates: list[str] | None = None,
             correlation_id: str = "corr-1") -> PreparedBatch:
    rejections = rejections or []
    in_batch_duplicates = in_batch_duplicates or []
    return PreparedBatch(
        batch_id=batch_id or uuid.uuid4(), developer_id="dev-1", correlation_id=correlation_id,
        content_hash=content_hash, received_at=RECEIVED_AT, sent_at=RECEIVED_AT, client={"editor": "vscode"},
        received=len(events) + len(rejections) + len(in_batch_duplicates), events=events, rejections=rejections,
        in_batch_duplicates=in_batch_duplicates,
    )


def count(session, table: str, where: str = "true", **params: Any) -> int:
    return session.execute(text(f"SELECT count(*) FROM {table} WHERE {where}"), params).scalar_one()


def all_counts(session) -> dict[str, int]:
    return {t: count(session, t) for t in ("batches", "raw_events", "audit_log", "outbox")}


def test_persist_writes_batch_events_audit_and_outbox(session):
    events = [pevent(0, minutes_ago=3), pevent(2, minutes_ago=10), pevent(3, minutes_ago=1)]
    rejection = Rejection(index=1, event_id=None, code="invalid_event", field="events[1]", message="bad")
    p = prepared(events, rejections=[rejection])
    outcome = persist_batch(session, p)
    assert outcome.kind == "stored"
    assert sorted(outcome.accepted_ids) == sorted(str(e.event_id) for e in events)
    assert outcome.duplicate_ids == []
    assert outcome.outbox_id is not None
    row = session.execute(text("SELECT * FROM batches WHERE batch_id = :b"), {"b": p.batch_id}).one()
    assert (row.status, row.received, row.accepted, row.duplicates, row.rejected) == ("persisted", 4, 3, 0, 1)
    assert (row.first_ts, row.last_ts) == (RECEIVED_AT - timedelta(minutes=10), RECEIVED_AT - timedelta(minutes=1))
    assert (row.correlation_id, row.content_hash, row.client) == ("corr-1", "h" * 64, {"editor": "vscode"})
    raws = session.execute(text("SELECT event_id, seq, raw FROM raw_events WHERE batch_id = :b ORDER BY seq"),
                           {"b": p.batch_id}).all()
    assert [(r.event_id, r.seq, r.raw) for r in raws] == [(e.event_id, e.seq, e.raw) for e in events]
    steps = session.execute(text("SELECT step, details FROM audit_log WHERE batch_id = :b ORDER BY id"),
                            {"b": p.batch_id}).all()
    assert [s.step for s in steps] == ["received", "validated", "persisted"]
    assert steps[1].details["rejections"] == [rejection.as_dict()]
    outbox = session.execute(text("SELECT id, batch_id, correlation_id, status FROM outbox WHERE batch_id = :b"),
                             {"b": p.batch_id}).one()
    assert tuple(outbox) == (outcome.outbox_id, p.batch_id, "corr-1", "pending")


def test_same_batch_id_same_hash_is_a_duplicate_and_other_hash_a_conflict(session):
    bid = uuid.uuid4()
    persist_batch(session, prepared([pevent(0)], batch_id=bid, content_hash="a" * 64))
    before = all_counts(session)
    again: PersistOutcome = persist_batch(session, prepared([pevent(0)], batch_id=bid, content_hash="a" * 64))
    assert again.kind == "duplicate_batch"
    assert again.batch is not None and again.batch.batch_id == bid
    conflict = persist_batch(session, prepared([pevent(0)], batch_id=bid, content_hash="b" * 64))
    assert conflict.kind == "conflict"
    assert (again.outbox_id, conflict.outbox_id, again.accepted_ids) == (None, None, [])
    # Nothing stored; the trail records the resend and the conflicting send.
    assert {**all_counts(session), "audit_log": before["audit_log"]} == before
    steps = session.execute(text("SELECT step FROM audit_log WHERE batch_id = :b ORDER BY id"), {"b": bid}).scalars()
    assert list(steps)[-2:] == ["duplicate_batch", "batch_conflict"]


def test_event_of_an_earlier_batch_is_a_duplicate_pointing_at_the_original(session):
    shared = pevent(0)
    first = prepared([shared, pevent(1)])
    persist_batch(session, first)
    new = pevent(1)
    repeat = pevent(0, event_id=shared.event_id, minutes_ago=30)  # same id, other content
    second = prepared([repeat, new], in_batch_duplicates=[str(new.event_id)])
    outcome = persist_batch(session, second)
    assert outcome.accepted_ids == [str(new.event_id)]
    assert outcome.duplicate_ids == [str(shared.event_id), str(new.event_id)]
    row = session.execute(text("SELECT batch_id, raw, corrected_ts FROM raw_events WHERE event_id = :e"),
                          {"e": shared.event_id}).one()
    assert (row.batch_id, row.raw, row.corrected_ts) == (first.batch_id, shared.raw, shared.corrected_ts)
    dedup = session.execute(text("SELECT details FROM audit_log WHERE batch_id = :b AND step = 'deduplicated' "
                                 "ORDER BY id"), {"b": second.batch_id}).scalars().all()
    assert dedup == [
        {"event_id": str(shared.event_id), "original_batch_id": str(first.batch_id), "developer_id": "dev-1"},
        {"event_id": str(new.event_id), "original_batch_id": str(second.batch_id), "developer_id": "dev-1"},
    ]
    counts = session.execute(text("SELECT received, accepted, duplicates, rejected FROM batches WHERE batch_id = :b"),
                             {"b": second.batch_id}).one()
    assert tuple(counts) == (3, 1, 2, 0)


def test_a_batch_of_only_duplicates_needs_no_processing(session):
    ev = pevent(0)
    persist_batch(session, prepared([ev]))
    p = prepared([pevent(0, event_id=ev.event_id)])
    outcome = persist_batch(session, p)
    assert (outcome.kind, outcome.accepted_ids, outcome.outbox_id) == ("stored", [], None)
    row = session.get(Batch, ("dev-1", p.batch_id))
    assert (row.status, row.accepted, row.duplicates, row.first_ts, row.last_ts) == ("processed", 0, 1, None, None)
    assert count(session, "outbox", "batch_id = :b", b=p.batch_id) == 0


def test_rolling_back_leaves_nothing(session):
    """What the 422 path relies on: the whole batch goes with its transaction."""
    before = all_counts(session)
    nested = session.begin_nested()
    persist_batch(session, prepared([pevent(0), pevent(1)]))
    assert all_counts(session) != before
    nested.rollback()
    assert all_counts(session) == before


def test_counts_must_add_up(session):
    with pytest.raises(IntegrityError, match="counts_add_up"), session.begin_nested():
        session.execute(text(
            "INSERT INTO batches (batch_id, developer_id, correlation_id, content_hash, received_at, sent_at, "
            "received, accepted, duplicates, rejected) VALUES (:b, 'd', 'c', 'h', now(), now(), 3, 1, 1, 0)"),
            {"b": uuid.uuid4()})


def test_an_event_id_can_be_stored_only_once_per_developer(session):
    ev = pevent(0)
    p = prepared([ev])
    persist_batch(session, p)
    with pytest.raises(IntegrityError), session.begin_nested():
        session.execute(text(
            "INSERT INTO raw_events (event_id, batch_id, developer_id, seq, type, schema_version, client_ts, "
            "client_utc_offset_minutes, corrected_ts, received_at, raw) "
            "SELECT event_id, batch_id, developer_id, seq + 1, type, schema_version, client_ts, "
            "client_utc_offset_minutes, corrected_ts, received_at, raw FROM raw_events WHERE event_id = :e"),
            {"e": ev.event_id})


def _persist_concurrently(db, batches: list[PreparedBatch]) -> list[Any]:
    barrier = threading.Barrier(len(batches))
    outcomes: list[Any] = [None] * len(batches)

    def run(i: int) -> None:
        try:
            with db.transaction() as s:
                s.execute(text("SELECT 1"))
                barrier.wait()
                outcomes[i] = persist_batch(s, batches[i])
        except Exception as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def test_overlapping_batches_in_opposite_orders_do_not_deadlock(clean_db):
    """Concurrent batches sharing events in different orders: each event stored once, neither aborted.

    A temporary trigger slows every row insert down so the two INSERTs really overlap in the database
    (in one Python process the GIL would otherwise mostly serialize them).
    """
    with clean_db.engine.begin() as conn:
        conn.execute(text("CREATE FUNCTION test_slow_insert() RETURNS trigger LANGUAGE plpgsql AS "
                          "$$ BEGIN PERFORM pg_sleep(0.002); RETURN NEW; END $$"))
        conn.execute(text("CREATE TRIGGER test_slow_insert BEFORE INSERT ON raw_events "
                          "FOR EACH ROW EXECUTE FUNCTION test_slow_insert()"))
    try:
        ids = [uuid.uuid4() for _ in range(200)]
        batches = [prepared([pevent(i, event_id=e) for i, e in enumerate(order)]) for order in (ids, ids[::-1])]
        outcomes = _persist_concurrently(clean_db, batches)
    finally:
        with clean_db.engine.begin() as conn:
            conn.execute(text("DROP TRIGGER test_slow_insert ON raw_events"))
            conn.execute(text("DROP FUNCTION test_slow_insert()"))
    assert all(isinstance(o, PersistOutcome) for o in outcomes), outcomes
    assert sum(len(o.accepted_ids) for o in outcomes) == 200
    assert sum(len(o.duplicate_ids) for o in outcomes) == 200
    with clean_db.engine.connect() as conn:
        stored = conn.execute(text("SELECT count(*), count(DISTINCT event_id) FROM raw_events")).one()
    assert tuple(stored) == (200, 200)


def test_batch_and_event_ids_are_unique_per_developer(session):
    """Another developer's batch and events with the same ids are stored beside them: no duplicate, no conflict."""
    bid, e0, e1 = uuid.uuid4(), pevent(0), pevent(1)
    mine = persist_batch(session, prepared([e0, e1], batch_id=bid, content_hash="a" * 64))
    theirs = persist_batch(session, replace(prepared([e1, e0], batch_id=bid, content_hash="b" * 64),
                                            developer_id="dev-2"))
    for outcome in (mine, theirs):
        assert (outcome.kind, outcome.duplicate_ids) == ("stored", [])
        assert sorted(outcome.accepted_ids) == sorted([str(e0.event_id), str(e1.event_id)])
        assert outcome.outbox_id is not None and outcome.batch is not None
    assert (mine.batch.developer_id, theirs.batch.developer_id) == ("dev-1", "dev-2")
    stored = session.execute(select(RawEvent.developer_id, RawEvent.event_id).where(RawEvent.batch_id == bid)
                             .order_by(RawEvent.developer_id, RawEvent.seq)).all()
    assert [tuple(r) for r in stored] == [("dev-1", e0.event_id), ("dev-1", e1.event_id),
                                          ("dev-2", e0.event_id), ("dev-2", e1.event_id)]
    # Each developer's own resend still deduplicates against its own batch only.
    again = persist_batch(session, replace(prepared([e1, e0], batch_id=bid, content_hash="b" * 64),
                                           developer_id="dev-2"))
    conflict = persist_batch(session, prepared([e0], batch_id=bid, content_hash="b" * 64))
    assert (again.kind, conflict.kind) == ("duplicate_batch", "conflict")
    assert again.batch.developer_id == "dev-2" and conflict.batch.developer_id == "dev-1"
    later = persist_batch(session, replace(prepared([pevent(0, event_id=e0.event_id)]), developer_id="dev-2"))
    assert (later.accepted_ids, later.duplicate_ids) == ([], [str(e0.event_id)])
    [details] = session.execute(text("SELECT details FROM audit_log WHERE step = 'deduplicated' AND batch_id = :b"),
                                {"b": later.batch.batch_id}).scalars()
    assert details == {"event_id": str(e0.event_id), "original_batch_id": str(bid), "developer_id": "dev-2"}


def test_two_developers_posting_the_same_ids_concurrently_both_store_them(clean_db):
    """The same ids from two developers at once: neither waits for the other's key, both store every event; the
    same developer's concurrent resend is still stored exactly once."""
    bid, ids = uuid.uuid4(), [uuid.uuid4() for _ in range(50)]

    def one(developer_id: str) -> PreparedBatch:
        return replace(prepared([pevent(i, event_id=e) for i, e in enumerate(ids)], batch_id=bid),
                       developer_id=developer_id)

    outcomes = _persist_concurrently(clean_db, [one("dev-1"), one("dev-2"), one("dev-1"), one("dev-2")])
    assert all(isinstance(o, PersistOutcome) for o in outcomes), outcomes
    by_developer: dict[str, list[str]] = {}
    for o in outcomes:
        by_developer.setdefault(o.batch.developer_id, []).append(o.kind)
    assert {d: sorted(kinds) for d, kinds in by_developer.items()} == {
        "dev-1": ["duplicate_batch", "stored"], "dev-2": ["duplicate_batch", "stored"]}
    assert sorted(len(o.accepted_ids) for o in outcomes) == [0, 0, 50, 50]
    with clean_db.engine.connect() as conn:
        stored = conn.execute(text("SELECT developer_id, count(*), count(DISTINCT event_id) FROM raw_events "
                                   "GROUP BY developer_id ORDER BY developer_id")).all()
    assert [tuple(r) for r in stored] == [("dev-1", 50, 50), ("dev-2", 50, 50)]
