"""Helpers for tests of the processing pipeline: polling until a batch is processed, storing a body without HTTP."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from core.settings import Settings
from models.db import Database


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def stored_batch(session: Any, batch_id: Any, developer_id: str | None = None) -> Any:
    """The batch with this id (of this developer), or None. A batch id is unique per developer only: without a
    developer this looks it up by id alone, for tests whose batch ids one developer uses (MultipleResultsFound
    otherwise)."""
    from sqlalchemy import select

    from models.tables import Batch

    query = select(Batch).where(Batch.batch_id == uuid.UUID(str(batch_id)))
    if developer_id is not None:
        query = query.where(Batch.developer_id == developer_id)
    return session.scalars(query).one_or_none()


def batch_status(db: Database, batch_id: str, developer_id: str | None = None) -> str | None:
    with db.session() as s:
        batch = stored_batch(s, batch_id, developer_id)
        return batch.status if batch else None


def wait_processed(db: Database, batch_id: str, timeout: float = 30.0,
                   statuses: tuple[str, ...] = ("processed", "processed_with_errors", "failed"),
                   developer_id: str | None = None) -> str:
    return wait_for(lambda: (s := batch_status(db, batch_id, developer_id)) in statuses and s, timeout)


def persist_body(db: Database, body: dict[str, Any], *, received_at: Any = None,
                 correlation_id: str | None = None) -> Any:
    """Validate and store one request body the way the ingest endpoint does, without HTTP or a publish.

    Returns the `PersistOutcome` (the batch stays `persisted` with a pending outbox record).
    """
    from app.ingest.prepare import prepare_batch
    from models.ingest import persist_batch
    from tests.support.factories import now

    prepared = prepare_batch(body, correlation_id=correlation_id or uuid.uuid4().hex,
                             received_at=received_at or now(), settings=Settings.from_env())
    with db.transaction() as s:
        return persist_batch(s, prepared)
