"""The audit hash chain on the real PostgreSQL: sealing, verification, tamper detection, a batch's trail."""

from __future__ import annotations

import itertools
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, insert, select, text

from models.audit_chain import (
    GENESIS,
    batch_trail,
    canonical_content,
    chain_hash,
    content_hash,
    seal_once,
    seal_pending,
    verify_chain,
)
from models.batch_lifecycle import audit
from models.db import Database
from models.ingest import PreparedBatch, PreparedEvent, persist_batch
from models.tables import AuditRecord

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def write(db: Database, n: int = 1, *, step: str = "step", age: timedelta | None = None, **details) -> list[int]:
    """n audit records in one transaction; `age` backdates created_at (it is the transaction start otherwise)."""
    ids = []
    with db.transaction() as s:
        for i in range(n):
            values = {"step": step, "correlation_id": f"c-{i}", "batch_id": None,
                      "details": {"i": i, **details}}
            if age is not None:
                values["created_at"] = func.now() - age
            ids.append(s.execute(insert(AuditRecord).values(**values).returning(AuditRecord.id)).scalar_one())
    return ids


def seals(db: Database) -> list[tuple[int, int | None]]:
    with db.session() as s:
        return [tuple(r) for r in s.execute(select(AuditRecord.id, AuditRecord.seal_seq).order_by(AuditRecord.id))]


def verify(db: Database, **kwargs):
    with db.session() as s:
        return verify_chain(s, **kwargs)


def tamper(db: Database, *statements: str) -> None:
    """What only someone bypassing the trigger can do, in one transaction (nobody else sees it disabled)."""
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        for sql in statements:
            conn.execute(text(sql))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


def test_content_is_canonical_json_of_the_record() -> None:
    class Rec:
        id = 7
        created_at = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
        correlation_id = "corr"
        batch_id = uuid.UUID("00000000-0000-0000-0000-000000000001")
        step = "persisted"
        is_replay = False
        details = {"b": [1, 2.5], "a": "é"}

    assert canonical_content(Rec) == (
        '{"batch_id":"00000000-0000-0000-0000-000000000001","correlation_id":"corr",'
        '"created_at":"2024-05-01T14:00:00.123456+00:00","details":{"a":"é","b":[1,2.5]},"id":7,'
        '"is_replay":false,"step":"persisted"}'
    ).encode()
    assert len(content_hash(Rec)) == 64
    assert chain_hash(GENESIS, "a" * 64) != chain_hash("a" * 64, GENESIS)


def test_seal_chains_records_in_id_order_and_verify_accepts_it(clean_db: Database) -> None:
    db = clean_db
    write(db, 3, age=timedelta(minutes=1), note="ünïcode", ratio=0.1 + 0.2, nested={"x": [None, True]})
    result = seal_pending(db, grace_seconds=0)
    assert (result.sealed, result.first_seq, result.last_seq) == (3, 1, 3)
    with db.session() as s:
        rows = s.scalars(select(AuditRecord).order_by(AuditRecord.seal_seq)).all()
    assert [r.seal_seq for r in rows] == [1, 2, 3] and [r.id for r in rows] == sorted(r.id for r in rows)
    assert rows[0].prev_hash == GENESIS
    for prev, row in itertools.pairwise(rows):
        assert row.prev_hash == chain_hash(prev.prev_hash, prev.content_hash)
    assert all(r.content_hash == content_hash(r) and r.sealed_at is not None for r in rows)

    ok = verify(db)
    assert ok.ok and ok.checked == 3 and ok.head == result.head == chain_hash(rows[2].prev_hash, rows[2].content_hash)

    # Later records extend the same chain; a run with nothing due changes nothing.
    write(db, 2)
    assert seal_pending(db, grace_seconds=0).last_seq == 5
    assert seal_pending(db, grace_seconds=0).sealed == 0
    assert verify(db).checked == 5 and verify(db).unsealed == 0


def test_grace_period_seals_only_a_prefix_of_old_records(clean_db: Database) -> None:
    db = clean_db
    old1 = write(db, age=timedelta(minutes=1))[0]
    young = write(db)[0]
    old2 = write(db, age=timedelta(minutes=1))[0]
    # The young record stops the run: nothing after it is sealed before it, so the chain keeps id order.
    assert seal_pending(db, grace_seconds=10).sealed == 1
    assert seals(db) == [(old1, 1), (young, None), (old2, None)]
    assert seal_pending(db, grace_seconds=0).sealed == 2
    assert seals(db) == [(old1, 1), (young, 2), (old2, 3)]
    assert verify(db).out_of_id_order == 0


def test_a_lower_id_committed_after_a_higher_one_was_sealed_is_sealed_next(clean_db: Database) -> None:
    db = clean_db
    slow = db.session()
    slow.begin()
    late_id = slow.execute(insert(AuditRecord).values(step="slow", correlation_id="c", details={})
                           .returning(AuditRecord.id)).scalar_one()
    early_id = write(db)[0]
    assert late_id < early_id
    assert seal_pending(db, grace_seconds=0).sealed == 1  # the in-flight lower id is invisible
    slow.commit()
    slow.close()
    assert seal_pending(db, grace_seconds=0).sealed == 1
    assert seals(db) == [(late_id, 2), (early_id, 1)]
    result = verify(db)
    assert result.ok and result.checked == 2 and result.out_of_id_order == 1


def test_one_sealer_at_a_time(clean_db: Database) -> None:
    db = clean_db
    write(db, 2)
    holder = db.session()
    holder.begin()
    assert seal_once(holder, grace_seconds=0).sealed == 2  # holds the advisory lock until commit
    assert seal_pending(db, grace_seconds=0, wait=False).busy
    holder.commit()
    holder.close()

    # Many writers and sealers at once: contiguous seal_seq, every record sealed exactly once.
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                write(db, 3)
                seal_pending(db, grace_seconds=0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    seal_pending(db, grace_seconds=0)
    sealed = sorted(seq for _, seq in seals(db))
    assert sealed == list(range(1, 2 + 4 * 5 * 3 + 1))
    assert verify(db).ok


@pytest.fixture
def sealed_chain(clean_db: Database) -> list[int]:
    """Five sealed records; returns their ids in seal order."""
    ids = write(clean_db, 5, age=timedelta(minutes=1))
    seal_pending(clean_db, grace_seconds=0)
    return ids


def test_verify_detects_an_edited_record(clean_db: Database, sealed_chain: list[int]) -> None:
    tamper(clean_db, f"UPDATE audit_log SET details = '{{\"i\": 99}}'::jsonb WHERE id = {sealed_chain[2]}")
    result = verify(clean_db)
    assert not result.ok
    assert (result.broken.seal_seq, result.broken.id, result.broken.problem) == (3, sealed_chain[2], "edited")
    assert result.checked == 2


def test_verify_detects_a_deleted_record(clean_db: Database, sealed_chain: list[int]) -> None:
    tamper(clean_db, f"DELETE FROM audit_log WHERE id = {sealed_chain[1]}")
    broken = verify(clean_db).broken
    assert broken is not None and broken.problem == "gap"
    assert (broken.seal_seq, broken.id) == (2, sealed_chain[2])  # seq 2 missing; the chain resumes at id #3


def test_verify_detects_reordered_records(clean_db: Database, sealed_chain: list[int]) -> None:
    a, b = sealed_chain[1], sealed_chain[3]
    tamper(clean_db,
           f"UPDATE audit_log SET seal_seq = -1 WHERE id = {a}",
           f"UPDATE audit_log SET seal_seq = 2 WHERE id = {b}",
           f"UPDATE audit_log SET seal_seq = 4 WHERE id = {a}")
    broken = verify(clean_db).broken
    assert broken is not None and broken.problem == "reordered"
    assert (broken.seal_seq, broken.id) == (2, b)


def test_verify_since_starts_mid_chain(clean_db: Database, sealed_chain: list[int]) -> None:
    later = write(clean_db, 2)
    seal_pending(clean_db, grace_seconds=0)
    with clean_db.session() as s:
        since = s.scalar(select(AuditRecord.created_at).where(AuditRecord.id == later[0]))
    result = verify(clean_db, since=since)
    assert result.ok and (result.first_seq, result.last_seq, result.checked) == (6, 7, 2)
    assert result.head == verify(clean_db).head
    # A break after the start is still found; one before it is out of scope.
    tamper(clean_db, f"UPDATE audit_log SET step = 'x' WHERE id = {later[1]}")
    assert verify(clean_db, since=since).broken.seal_seq == 7
    assert verify(clean_db, since=datetime.now(UTC) + timedelta(hours=1)).checked == 0


def test_batch_trail_in_order_with_seal_state(clean_db: Database) -> None:
    db = clean_db
    bid = uuid.uuid4()
    eid = uuid.uuid4()
    with db.transaction() as s:
        persist_batch(s, PreparedBatch(
            batch_id=bid, developer_id="dev-1", correlation_id="corr-t", content_hash="h" * 64, received_at=NOW,
            sent_at=NOW, client={}, received=1, rejections=[],
            events=[PreparedEvent(event_id=eid, seq=0, type="file.save", schema_version="1.1", session_id=None,
                                  client_ts=NOW, client_utc_offset_minutes=0, corrected_ts=NOW,
                                  raw={"type": "file.save", "payload": {"file": "a.py"}})]))
    seal_pending(db, grace_seconds=0)
    with db.transaction() as s:
        audit(s, "replay_requested", batch_id=bid, correlation_id="corr-t", is_replay=True, replay=1)
    with db.session() as s:
        trail = batch_trail(s, "dev-1", bid)
        assert batch_trail(s, "dev-1", uuid.uuid4()) is None
        assert batch_trail(s, "dev-2", bid) is None
    assert [r["step"] for r in trail] == ["received", "validated", "persisted", "replay_requested"]
    assert [r["id"] for r in trail] == sorted(r["id"] for r in trail)
    assert all(r["batch_id"] == str(bid) and r["correlation_id"] == "corr-t" for r in trail)
    assert [r["sealed"] for r in trail] == [True, True, True, False]
    assert [r["intact"] for r in trail] == [True, True, True, None]
    assert trail[-1]["is_replay"] is True and trail[-1]["details"] == {"replay": 1}
    assert trail[0]["created_at"].endswith("+00:00") and trail[0]["seal_seq"] == 1
