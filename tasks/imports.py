"""History imports in the background (queue `maintenance`): the task takes a job id, app/wakatime_import.py
does the work."""

from __future__ import annotations

import uuid

from tasks.celery_app import app
from tasks.context import DevpulseTask, celery, database, settings

IMPORT_TASK = "devpulse.maintenance.import_wakatime"


@app.task(base=DevpulseTask, name=IMPORT_TASK, ignore_result=True, acks_late=True)
def import_wakatime(job_id: str) -> None:
    # The one import of app/ from tasks/: an import runs the ingest validation (app/ingest/prepare.py), which
    # lives at the HTTP edge but needs no request (prepare_batch takes plain values).
    from app.wakatime_import import run_import

    run_import(database(), celery(), settings(), uuid.UUID(job_id))
