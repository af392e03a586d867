"""A real Celery worker (threads pool, in this process) on the suite's real Redis and PostgreSQL.

Running it in-process lets a test make one danger rule fail with monkeypatch
while every message still goes through the real broker and result backend:
no eager mode, so chord semantics are the real ones.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from core.settings import Settings
from models.db import Database


@pytest.fixture(scope="session")
def celery_worker(celery_app) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    from celery.contrib.testing.worker import start_worker

    with start_worker(celery_app, pool="threads", concurrency=4, perform_ping_check=False,
                      loglevel="WARNING", shutdown_timeout=30) as worker:
        yield worker


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def batch_status(db: Database, batch_id: str) -> str | None:
    from models.tables import Batch

    with db.session() as s:
        batch = s.get(Batch, uuid.UUID(batch_id))
        return batch.status if batch else None


def wait_processed(db: Database, batch_id: str, timeout: float = 30.0,
                   statuses: tuple[str, ...] = ("processed", "processed_with_errors", "failed")) -> str:
    return wait_for(lambda: (s := batch_status(db, batch_id)) in statuses and s, timeout)


@pytest.fixture
def pipeline_client(app, celery_worker):  # type: ignore[no-untyped-def]
    """A test client that closes each response like a real server does, which runs the
    publish-after-response hook (the plain `client` fixture leaves batches `persisted`)."""
    from flask.testing import FlaskClient

    class ClosingClient(FlaskClient):
        def open(self, *args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
            response = super().open(*args, **kwargs)
            response.get_data()
            response.close()
            # The publish runs on the publisher's threads: wait for it, as a client would for the pipeline.
            self.application.extensions["devpulse.publisher"].wait_idle()
            return response

    app.test_client_class = ClosingClient
    return app.test_client()


def persist_body(db: Database, body: dict[str, Any], *, received_at: Any = None,
                 correlation_id: str | None = None) -> Any:
    """Validate and store one request body the way the ingest endpoint does, without HTTP or a publish.

    Returns the `PersistOutcome` (the batch stays `persisted` with a pending outbox record).
    """
    from app.ingest.prepare import prepare_batch
    from models.ingest import persist_batch
    from tests.factories import now

    prepared = prepare_batch(body, correlation_id=correlation_id or uuid.uuid4().hex,
                             received_at=received_at or now(), settings=Settings.from_env())
    with db.transaction() as s:
        return persist_batch(s, prepared)
