"""What a task needs around it: settings, a database per worker process, a base Task class."""

from __future__ import annotations

from celery import Task

from models.db import Database
from models.settings import Settings

_db: Database | None = None


def settings() -> Settings:
    from tasks.celery_app import app

    return app.conf.devpulse_settings


def database() -> Database:
    global _db
    if _db is None:
        _db = Database()
        _db.configure(settings().sqlalchemy_url, pool_size=2)
    return _db


def reset_database() -> None:
    global _db
    if _db is not None:
        _db.dispose()
    _db = None


class DevpulseTask(Task):
    """Base task: JSON-only arguments (ids and a small context), never event lists."""

    abstract = True
    typing = True
