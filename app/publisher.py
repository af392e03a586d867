"""Connects the web process to the Celery canvas (publishing only; tasks never import app/).

Publishes run on a small pool of background threads, not on the request's own thread: a slow or
frozen broker then delays no acknowledgement (not even the next request on a keep-alive
connection), and anything the pool cannot take is left to the outbox relay.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from celery import Celery
from flask import Flask

from core.settings import Settings
from models.db import Database

log = logging.getLogger("devpulse.publisher")

# Beyond this many waiting publishes (a broker that hangs), new ones are left to the outbox relay.
MAX_BACKLOG = 200


class Publisher:
    def __init__(self, db: Database, celery: Celery, threads: int = 2) -> None:
        self.db = db
        self.celery = celery
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._backlog = 0

    def _pool(self) -> ThreadPoolExecutor:
        # Created on first use, inside the serving process (gunicorn forks before that).
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="publisher")
            return self._executor

    def submit(self, outbox_id: int, developer_id: str, batch_id: uuid.UUID, traceparent: str | None = None) -> bool:
        with self._lock:
            if self._backlog >= MAX_BACKLOG:
                log.warning("publish backlog full; outbox %s left to the relay", outbox_id)
                return False
            self._backlog += 1
        self._pool().submit(self._run, outbox_id, developer_id, batch_id, traceparent)
        return True

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until every submitted publish has finished (tests and graceful shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self._backlog == 0:
                    return True
            time.sleep(0.005)
        return False

    def _run(self, outbox_id: int, developer_id: str, batch_id: uuid.UUID, traceparent: str | None) -> None:
        from tasks.dispatch import dispatch_fresh

        try:
            dispatch_fresh(self.db, self.celery, outbox_id, developer_id, batch_id, traceparent)
        except Exception:  # events are safe in PostgreSQL; the relay retries
            log.warning("publish of outbox %s failed; the relay will retry", outbox_id, exc_info=True)
        finally:
            with self._lock:
                self._backlog -= 1


def init_app(app: Flask, settings: Settings) -> None:
    # The web's Celery app is built here, per Flask app, as in Flask's Celery example (`celery_init_app`).
    from tasks.celery_app import make_publisher

    celery = make_publisher(settings)
    app.extensions["celery"] = celery
    publisher = Publisher(app.extensions["devpulse.db"], celery)
    app.extensions["devpulse.publisher"] = publisher
    app.extensions["devpulse.publish"] = publisher.submit
