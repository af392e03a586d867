"""What the operator endpoints read from PostgreSQL: the schema's migration version, outbox counts."""

from __future__ import annotations

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

# A gauge counts at most this many records: a scrape's cost stays flat however far a backlog grows (a value of
# GAUGE_CAP reads "at least").
GAUGE_CAP = 10_000


def migration_version(engine: Engine) -> str | None:
    """The Alembic revision the database is at (raises when the database is unreachable)."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


def outbox_backlog(session: Session, cap: int = GAUGE_CAP) -> dict[str, int]:
    """Pending and dead-letter outbox records, each counted through its partial index and at most `cap` of them.

    Never a count over the whole outbox: dispatched records are its history and grow for ever."""
    row = session.execute(text("""
        SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE status = 'pending' LIMIT :cap) AS p),
               (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE status = 'dead_letter' LIMIT :cap) AS d)
    """), {"cap": cap}).one()
    return {"pending": int(row[0]), "dead_letter": int(row[1])}
