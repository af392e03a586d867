"""History imports in the background (queue `maintenance`): the task takes a job id, app/wakatime_import.py
does the work."""

from __future__ import annotations

import uuid

from tasks.celery_app import app
from tasks.context import DevpulseTask, celery, database, settings

IMPORT_TASK = "devpulse.maintenance.import_wakatime"
# An import of a multi-GB export runs for minutes, far beyond the pipeline jobs' TASK_TIME_LIMIT.
IMPORT_TIME_LIMIT_SECONDS = 24 * 3600


# Acknowledged on receipt, not late: the broker's visibility timeout (3 x TASK_TIME_LIMIT) is shorter than an
# import, and a late ack would hand the running job to a second worker. A job whose worker died stays `running`
# and is resumed from its last counted batch by `flask --app app data import-wakatime --resume JOB_ID`.
@app.task(base=DevpulseTask, name=IMPORT_TASK, ignore_result=True, acks_late=False,
          soft_time_limit=IMPORT_TIME_LIMIT_SECONDS, time_limit=IMPORT_TIME_LIMIT_SECONDS + 60)
def import_wakatime(job_id: str) -> None:
    # The one import of app/ from tasks/: an import runs the ingest validation (app/ingest/prepare.py), which
    # lives at the HTTP edge but needs no request (prepare_batch takes plain values).
    from app.wakatime_import import run_import

    run_import(database(), celery(), settings(), uuid.UUID(job_id))
