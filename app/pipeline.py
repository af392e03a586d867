"""Connects the web process to the Celery canvas (publishing only; tasks never import app/)."""

from __future__ import annotations

from flask import Flask

from models.settings import Settings


def init_app(app: Flask, settings: Settings) -> None:
    from tasks.canvas import dispatch_record
    from tasks.celery_app import configure

    configure(settings)
    db = app.extensions["devpulse.db"]
    app.extensions["devpulse.publish"] = lambda outbox_id: dispatch_record(db, settings, outbox_id)
