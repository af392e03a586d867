"""The normalization job's function (models/normalization.py) on the real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, timedelta
from typing import Any

from sqlalchemy import select, text

from models.normalization import normalize_batch
from models.tables import NormalizedEvent, RawEvent
from tests.support.factories import batch, event, now
from tests.support.pipeline import persist_body, stored_batch

COLUMNS = [c.name for c in NormalizedEvent.__table__.columns]


def normalize(db, batch_id: uuid.UUID) -> dict[str, int]:
    with db.transaction() as s:
        stored = stored_batch(s, batch_id)
        assert stored is not None
        return normalize_batch(s, stored)


def rows(db) -> dict[str, dict[str, Any]]:
    with db.session() as s:
        return {str(r.event_id): {c: getattr(r, c) for c in COLUMNS} for r in s.scalars(select(NormalizedEvent))}


def test_normalize_upcasts_canonicalizes_and_is_an_idempotent_upsert(clean_db):
    db = clean_db
    t0 = now() - timedelta(hours=1)
    events = [
        event("file.edit", t0, version="1.0", file="src/b.ts", lines_changed=7, chars_typed=30),
        event("ai.completion", t0 + timedelta(seconds=1), version="1.0", accepted=True, chars=12, provider="copilot"),
        event("ai.completion", t0 + timedelta(seconds=2), version="1.0", accepted=False, chars=5),
        event("file.save", t0 + timedelta(seconds=3), file="C:\\work\\proj\\src\\main.py", language="Python",
              workspace="C:\\work\\proj"),
        event("file.edit", t0 + timedelta(seconds=4), file="lib/x.rs", lines_added=1, lines_deleted=2),
        event("terminal.command", t0 + timedelta(seconds=5), exit_code=1),
    ]
    body = batch(events, developer_id="dev-n")
    outcome = persist_body(db, body)
    bid = outcome.batch.batch_id

    assert normalize(db, bid) == {"normalized": 6}
    first = rows(db)
    assert normalize(db, bid) == {"normalized": 6}
    assert rows(db) == first  # same values, normalized_at included: nothing was rewritten differently
    # A derived row that drifted is recomputed from its raw event, not kept.
    with db.transaction() as s:
        s.execute(text("UPDATE normalized_events SET language = 'cobol', payload = '{}'::jsonb"))
    normalize(db, bid)
    assert rows(db) == first

    by_seq = {r["seq"]: r for r in first.values()}
    assert sorted(by_seq) == list(range(6))
    for seq, ev in enumerate(events):
        r = by_seq[seq]
        assert str(r["event_id"]) == ev["event_id"]
        assert r["batch_id"] == bid
        assert r["developer_id"] == "dev-n"
        assert r["ts"] == (t0 + timedelta(seconds=seq)).astimezone(UTC)
        assert r["source_schema_version"] == ev.get("schema_version", "1.1")

    edit_1_0 = by_seq[0]
    assert edit_1_0["type"] == "file.edit"
    assert edit_1_0["payload"] == {"file": "src/b.ts", "lines_added": 7, "lines_deleted": 0, "chars_typed": 30}
    assert (edit_1_0["language"], edit_1_0["file_path"]) == ("typescript", "src/b.ts")

    accepted = by_seq[1]
    assert accepted["type"] == "ai.suggestion_accepted"
    assert accepted["payload"] == {"chars_inserted": 12, "provider": "copilot"}
    shown = by_seq[2]
    assert shown["type"] == "ai.suggestion_shown"
    assert shown["payload"] == {"chars": 5}

    save = by_seq[3]
    assert (save["language"], save["file_path"]) == ("python", "src/main.py")
    assert save["payload"]["language"] == "python" and save["payload"]["file"] == "src/main.py"

    assert (by_seq[4]["language"], by_seq[4]["file_path"]) == ("rust", "lib/x.rs")
    assert (by_seq[5]["language"], by_seq[5]["file_path"]) == (None, None)

    # The raw events are untouched: upcasting happens on the way out only.
    with db.session() as s:
        raw = s.scalars(select(RawEvent).where(RawEvent.batch_id == bid).order_by(RawEvent.seq)).all()
        assert [r.raw for r in raw] == events


def test_a_batch_only_normalizes_its_own_stored_events(clean_db):
    db = clean_db
    shared = event("file.save", now() - timedelta(minutes=10), file="a.py")
    first = persist_body(db, batch([shared]))
    second = persist_body(db, batch([event("file.save", now() - timedelta(minutes=9), file="b.py"), shared]))
    assert second.duplicate_ids == [shared["event_id"]]
    assert normalize(db, second.batch.batch_id) == {"normalized": 1}
    assert normalize(db, first.batch.batch_id) == {"normalized": 1}
    stored = rows(db)
    assert stored[shared["event_id"]]["batch_id"] == first.batch.batch_id
    assert stored[shared["event_id"]]["seq"] == 0
    assert len(stored) == 2
