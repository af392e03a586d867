"""Database access for requests: bounded retries with full jitter, behind the `database` breaker.

Each attempt is its own transaction, so a retried write can never half-write;
when the budget is spent, or the breaker is open, the caller answers 503 at
once instead of holding the client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pybreaker
from flask import Flask, current_app
from sqlalchemy.orm import Session

from core.breakers import breakers, is_transient_error
from core.retry import backoff_delay
from core.settings import Settings
from models.db import Database

T = TypeVar("T")


class StorageUnavailable(Exception):
    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Storage:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.budget = settings.db_retry_budget_ms / 1000.0
        self.breaker = breakers.get(
            "database", fail_max=settings.db_breaker_fail_max, reset_timeout=settings.db_breaker_reset_timeout
        )

    def transaction(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one transaction; retried on connectivity errors within the budget."""
        deadline = time.monotonic() + self.budget
        attempt = 0
        while True:
            try:
                return self.breaker.call(self._attempt, work)
            except pybreaker.CircuitBreakerError as exc:
                raise StorageUnavailable("The database is unavailable (circuit open).",
                                         retry_after=max(1, int(self.breaker.reset_timeout))) from exc
            except Exception as exc:
                if not is_transient_error(exc):
                    raise
                attempt += 1
                delay = backoff_delay(attempt, base=0.02, cap=self.budget)
                if time.monotonic() + delay >= deadline:
                    raise StorageUnavailable("The database is unavailable; retry later.") from exc
                time.sleep(delay)

    def _attempt(self, work: Callable[[Session], T]) -> T:
        with self.db.session() as session, session.begin():
            return work(session)


def init_app(app: Flask, settings: Settings) -> None:
    db = Database()
    db.configure(settings.sqlalchemy_url)
    app.extensions["devpulse.db"] = db
    app.extensions["devpulse.storage"] = Storage(db, settings)


def storage() -> Storage:
    return current_app.extensions["devpulse.storage"]


def database() -> Database:
    return current_app.extensions["devpulse.db"]
