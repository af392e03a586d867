"""What the operator endpoints read from PostgreSQL: the schema's migration version, outbox counts."""

from __future__ import annotations

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from models.tables import Outbox


def migration_version(engine: Engine) -> str | None:
    """The Alembic revision the database is at (raises when the database is unreachable)."""
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


def outbox_counts(session: Session) -> dict[str, int]:
    return {status: count for status, count in
            session.execute(select(Outbox.status, func.count()).group_by(Outbox.status)).tuples()}
