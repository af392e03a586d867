"""What a task needs around it: settings, a database per worker process, a base Task class."""

from __future__ import annotations

from celery import Celery, Task
from celery.signals import worker_process_init

from activity.danger import DangerThresholds
from core.breakers import breakers
from core.settings import Settings
from models.db import Database
from tasks.celery_app import app

_db: Database | None = None


def settings() -> Settings:
    return app.conf.devpulse_settings


def thresholds() -> DangerThresholds:
    """The danger thresholds, checked when the Celery app was built (see make_celery)."""
    return app.conf.devpulse_thresholds


def celery() -> Celery:
    """The worker's Celery app (re-dispatches from tasks and the CLI publish through it)."""
    return app


def database() -> Database:
    """The worker's database: every transaction goes through the `database` breaker, whose state (in Redis)
    the web processes share, so a worker that finds PostgreSQL gone fails fast and the web sees it too."""
    global _db
    if _db is None:
        # Configured before it is published: with the threads pool, another task must not pick up a Database
        # that is not configured yet.
        cfg = settings()
        breakers.configure(cfg.redis_url)
        db = Database()
        db.configure(cfg.sqlalchemy_url, pool_size=2, breaker=breakers.get(
            "database", fail_max=cfg.db_breaker_fail_max, reset_timeout=cfg.db_breaker_reset_timeout))
        _db = db
    return _db


def reset_database() -> None:
    global _db
    if _db is not None:
        _db.dispose()
    _db = None


@worker_process_init.connect
def _fresh_connections_after_fork(**_: object) -> None:
    # Connections must never be shared across a fork: each pool process opens its own.
    reset_database()


class DevpulseTask(Task):
    """Base task: JSON-only arguments (ids and a small context), never event lists."""

    abstract = True
    typing = True
