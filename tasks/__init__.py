"""Celery tasks of devpulse: `celery -A tasks worker|beat|flower` finds `app` here."""

from tasks.celery_app import app

__all__ = ["app"]
