"""The database itself refuses to change stored events and the audit trail (triggers from the migration)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import psycopg2.errors
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from models.ingest import PreparedBatch, PreparedEvent, persist_batch

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def stored(session):
    """One persisted batch of two events; returns its batch_id."""
    events = [
        PreparedEvent(event_id=uuid.uuid4(), seq=i, type="file.save", schema_version="1.1", session_id=None,
                      client_ts=NOW, client_utc_offset_minutes=0, corrected_ts=NOW,
                      raw={"type": "file.save", "payload": {"file": f"{i}.py"}})
        for i in range(2)
    ]
    bid = uuid.uuid4()
    persist_batch(session, PreparedBatch(
        batch_id=bid, developer_id="dev-1", correlation_id="c", content_hash="h" * 64, received_at=NOW,
        sent_at=NOW, client={}, received=2, events=events, rejections=[]))
    return bid


def refused(session, sql: str, **params) -> str:
    with pytest.raises(DBAPIError) as info, session.begin_nested():
        session.execute(text(sql), params)
    assert isinstance(info.value.orig, psycopg2.errors.InsufficientPrivilege)
    return str(info.value.orig)


@pytest.mark.parametrize("sql", [
    "UPDATE raw_events SET raw = '{}'::jsonb WHERE batch_id = :b",
    "UPDATE raw_events SET corrected_ts = now() WHERE batch_id = :b",
    "UPDATE raw_events SET seq = seq WHERE batch_id = :b",  # even a no-op rewrite
    "DELETE FROM raw_events WHERE batch_id = :b",
])
def test_raw_events_cannot_be_updated_or_deleted(session, stored, sql):
    select = text("SELECT * FROM raw_events WHERE batch_id = :b ORDER BY seq")
    before = session.execute(select, {"b": stored}).all()
    assert len(before) == 2
    message = refused(session, sql, b=stored)
    assert "append-only" in message
    assert session.execute(select, {"b": stored}).all() == before


def test_raw_events_can_still_be_inserted(session, stored):
    session.execute(text(
        "INSERT INTO raw_events (event_id, batch_id, developer_id, seq, type, schema_version, client_ts, "
        "client_utc_offset_minutes, corrected_ts, received_at, raw) "
        "VALUES (:e, :b, 'dev-1', 5, 'window.focus', '1.1', now(), 0, now(), now(), '{}')"),
        {"e": uuid.uuid4(), "b": stored})
    assert session.execute(text("SELECT count(*) FROM raw_events WHERE batch_id = :b"), {"b": stored}) \
        .scalar_one() == 3


def test_audit_records_cannot_be_deleted_or_rewritten(session, stored):
    assert "append-only" in refused(session, "DELETE FROM audit_log WHERE batch_id = :b", b=stored)
    refused(session, "UPDATE audit_log SET details = '{}'::jsonb WHERE batch_id = :b", b=stored)
    refused(session, "UPDATE audit_log SET step = 'x' WHERE batch_id = :b", b=stored)
    assert session.execute(text("SELECT count(*) FROM audit_log WHERE batch_id = :b"), {"b": stored}) \
        .scalar_one() == 3


def test_an_audit_record_can_be_sealed_exactly_once(session, stored):
    rid = session.execute(text("SELECT min(id) FROM audit_log WHERE batch_id = :b"), {"b": stored}).scalar_one()
    session.execute(text("UPDATE audit_log SET seal_seq = (SELECT coalesce(max(seal_seq), 0) + 1 FROM audit_log), "
                         "content_hash = :h, prev_hash = :p, sealed_at = now() WHERE id = :i"),
                    {"h": "a" * 64, "p": "0" * 64, "i": rid})
    refused(session, "UPDATE audit_log SET content_hash = :h WHERE id = :i", h="b" * 64, i=rid)
    assert session.execute(text("SELECT content_hash FROM audit_log WHERE id = :i"), {"i": rid}) \
        .scalar_one() == "a" * 64
