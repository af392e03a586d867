"""A real Celery worker (threads pool, in this process) on the suite's real Redis and PostgreSQL.

Running it in-process lets a test make one danger rule fail with monkeypatch
while every message still goes through the real broker and result backend:
no eager mode, so chord semantics are the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

# `celery_worker` (the session's one in-process worker) is in tests/conftest.py: the browser tests use it too.


@pytest.fixture
def pipeline_client(app, celery_worker):
    """A test client that closes each response like a real server does, which runs the
    publish-after-response hook (the plain `client` fixture leaves batches `persisted`)."""
    from flask.testing import FlaskClient

    class ClosingClient(FlaskClient):
        def open(self, *args: Any, **kwargs: Any):
            response = super().open(*args, **kwargs)
            response.get_data()
            response.close()
            # The publish runs on the publisher's threads: wait for it, as a client would for the pipeline.
            self.application.extensions["devpulse.publisher"].wait_idle()
            return response

    app.test_client_class = ClosingClient
    return app.test_client()


@pytest.fixture
def quiet_broker(clean_db, celery_app, redis_url) -> Iterator[Any]:
    """The suite's Redis as the sweeper sees it after a quiet spell: its marker in place and remembered (nothing
    was lost), the header queues empty. Yields a client to change that."""
    import redis

    from models.recovery import remember_marker
    from tasks.broker_watch import HEADER_QUEUES, MARKER

    client = redis.Redis.from_url(redis_url)
    client.delete(*HEADER_QUEUES)
    client.set(MARKER, "quiet")
    with clean_db.transaction() as session:
        remember_marker(session, "quiet")
    yield client
    client.delete(*HEADER_QUEUES)
    client.close()
