"""The Alembic migrations: batch and event ids are unique per developer (0003), and 0003 keeps existing rows."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError

from models.db import Database

ROOT = Path(__file__).resolve().parent.parent
KEYED = ("batches", "raw_events", "normalized_events", "batch_jobs", "outbox")

# (table, constraint, type, columns in key order) at head.
EXPECTED_KEYS = {
    ("batches", "pk_batches", "PRIMARY KEY", ("developer_id", "batch_id")),
    ("raw_events", "pk_raw_events", "PRIMARY KEY", ("developer_id", "event_id")),
    ("raw_events", "fk_raw_events_developer_id_batches", "FOREIGN KEY", ("developer_id", "batch_id")),
    ("normalized_events", "pk_normalized_events", "PRIMARY KEY", ("developer_id", "event_id")),
    ("normalized_events", "fk_normalized_events_developer_id_raw_events", "FOREIGN KEY",
     ("developer_id", "event_id")),
    ("batch_jobs", "pk_batch_jobs", "PRIMARY KEY", ("developer_id", "batch_id", "job")),
    ("batch_jobs", "fk_batch_jobs_developer_id_batches", "FOREIGN KEY", ("developer_id", "batch_id")),
    ("outbox", "pk_outbox", "PRIMARY KEY", ("id",)),
    ("outbox", "fk_outbox_developer_id_batches", "FOREIGN KEY", ("developer_id", "batch_id")),
}


def keys(engine: Engine) -> set[tuple[str, str, str, tuple[str, ...]]]:
    """Primary keys, unique constraints and foreign keys of the keyed tables, from pg_constraint."""
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT c.conrelid::regclass::text AS tbl, c.conname,
                   CASE c.contype WHEN 'p' THEN 'PRIMARY KEY' WHEN 'f' THEN 'FOREIGN KEY' ELSE 'UNIQUE' END,
                   array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, pos)
                         JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
                         ORDER BY k.pos) AS cols
              FROM pg_constraint c
             WHERE c.contype IN ('p', 'f', 'u') AND c.conrelid::regclass::text = ANY(:tables)
        """), {"tables": list(KEYED)}).all()
    return {(r[0], r[1], r[2], tuple(r[3])) for r in rows}


def unique_indexes(engine: Engine) -> set[tuple[str, tuple[str, ...]]]:
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT i.indrelid::regclass::text,
                   array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, pos)
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.pos)
              FROM pg_index i
             WHERE i.indisunique AND i.indrelid::regclass::text = ANY(:tables)
        """), {"tables": list(KEYED)}).all()
    return {(r[0], tuple(r[1])) for r in rows}


def test_batch_and_event_keys_are_per_developer_at_head(db: Database) -> None:
    assert keys(db.engine) == EXPECTED_KEYS
    # No unique index is left on an id alone: only (developer_id, ...) pairs decide what is a duplicate.
    uniques = unique_indexes(db.engine)
    assert ("batches", ("developer_id", "batch_id")) in uniques
    assert ("raw_events", ("developer_id", "event_id")) in uniques
    assert not {cols for _, cols in uniques} & {("batch_id",), ("event_id",)}
    with db.engine.connect() as conn:
        # The admin's / operator's lookup of a batch by its id alone has an index.
        assert conn.execute(text("SELECT 1 FROM pg_indexes WHERE tablename = 'batches' "
                                 "AND indexname = 'ix_batches_batch_id'")).scalar_one() == 1


# --- 0003 on a database with rows -------------------------------------------------------------------------


@pytest.fixture
def scratch_url(database_url: str) -> Iterator[str]:
    """A new, empty database on the suite's server (dropped afterwards)."""
    name = f"devpulse_migration_{uuid.uuid4().hex[:8]}"
    admin_url = make_url(database_url).set(database="postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(database_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def upgrade(url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, revision)


def _legacy_rows(engine: Engine) -> dict[str, Any]:
    """Rows as 0002 stores them (global ids): two developers' batches, events, jobs, outbox, normalized rows."""
    ids: dict[str, Any] = {"b1": uuid.uuid4(), "b2": uuid.uuid4(), "e1": uuid.uuid4(), "e2": uuid.uuid4()}
    with engine.begin() as conn:
        for batch, developer, event in (("b1", "dev-1", "e1"), ("b2", "dev-2", "e2")):
            params = {"b": ids[batch], "d": developer, "e": ids[event]}
            conn.execute(text(
                "INSERT INTO batches (batch_id, developer_id, correlation_id, content_hash, received_at, sent_at, "
                "received, accepted, duplicates, rejected) VALUES (:b, :d, 'c', 'h', now(), now(), 1, 1, 0, 0)"),
                params)
            conn.execute(text(
                "INSERT INTO raw_events (event_id, batch_id, developer_id, seq, type, schema_version, client_ts, "
                "client_utc_offset_minutes, corrected_ts, received_at, raw) "
                "VALUES (:e, :b, :d, 0, 'file.save', '1.1', now(), 0, now(), now(), '{}')"), params)
            conn.execute(text(
                "INSERT INTO normalized_events (event_id, batch_id, seq, developer_id, type, source_schema_version, "
                "ts, utc_offset_minutes, payload) VALUES (:e, :b, 0, :d, 'file.save', '1.1', now(), 0, '{}')"),
                params)
            conn.execute(text("INSERT INTO outbox (batch_id, correlation_id) VALUES (:b, 'c')"), params)
            conn.execute(text("INSERT INTO batch_jobs (batch_id, job, status) VALUES (:b, 'aggregate', 'ok')"),
                         params)
            conn.execute(text("INSERT INTO audit_log (correlation_id, batch_id, step) VALUES ('c', :b, 'received')"),
                         params)
    return ids


def test_0003_keeps_existing_rows_and_their_developers(scratch_url: str) -> None:
    upgrade(scratch_url, "0002")
    engine = create_engine(scratch_url)
    try:
        ids = _legacy_rows(engine)
        tables = (*KEYED, "audit_log")
        with engine.connect() as conn:
            before = {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables}
        upgrade(scratch_url, "head")
        with engine.connect() as conn:
            assert {t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in tables} == before
            # The new developer_id columns come from each row's batch.
            for table in ("outbox", "batch_jobs"):
                rows = conn.execute(text(f"SELECT batch_id, developer_id FROM {table} ORDER BY developer_id")).all()
                assert [tuple(r) for r in rows] == [(ids["b1"], "dev-1"), (ids["b2"], "dev-2")]
        assert keys(engine) == EXPECTED_KEYS

        # After the upgrade dev-2 may use dev-1's batch and event ids; dev-1 still may not reuse its own.
        with engine.begin() as conn:
            params = {"b": ids["b1"], "e": ids["e1"]}
            conn.execute(text(
                "INSERT INTO batches (batch_id, developer_id, correlation_id, content_hash, received_at, sent_at, "
                "received, accepted, duplicates, rejected) VALUES (:b, 'dev-2', 'c2', 'h', now(), now(), 1, 1, 0, 0)"),
                params)
            conn.execute(text(
                "INSERT INTO raw_events (event_id, batch_id, developer_id, seq, type, schema_version, client_ts, "
                "client_utc_offset_minutes, corrected_ts, received_at, raw) "
                "VALUES (:e, :b, 'dev-2', 0, 'file.save', '1.1', now(), 0, now(), now(), '{}')"), params)
        with pytest.raises(IntegrityError, match="pk_raw_events"), engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO raw_events (event_id, batch_id, developer_id, seq, type, schema_version, client_ts, "
                "client_utc_offset_minutes, corrected_ts, received_at, raw) "
                "VALUES (:e, :b, 'dev-1', 1, 'file.save', '1.1', now(), 0, now(), now(), '{}')"), params)
        # An event must belong to a batch of its own developer.
        with pytest.raises(IntegrityError, match="fk_raw_events_developer_id_batches"), engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO raw_events (event_id, batch_id, developer_id, seq, type, schema_version, client_ts, "
                "client_utc_offset_minutes, corrected_ts, received_at, raw) "
                "VALUES (:e, :b, 'dev-3', 0, 'file.save', '1.1', now(), 0, now(), now(), '{}')"),
                {"b": ids["b2"], "e": uuid.uuid4()})
    finally:
        engine.dispose()
