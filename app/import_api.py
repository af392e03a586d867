"""History imports over HTTP (app/wakatime_import.py does the work, in the background).

    POST /api/developers/<id>/import/wakatime      the export file as the body (or multipart field `file`): 202
    GET  /api/developers/<id>/import/<job_id>      the job's status, counts, progress and first errors

The upload is written to IMPORT_DIR in chunks as it arrives (never held whole), then a job row is recorded and
the task queued. Posting takes the ingest rule (a token of that developer, or one created with --ingest-for-all);
reading the job takes the read rule (that developer, or an admin).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import IO, Any

from flask import Blueprint, current_app, jsonify, request

from app.auth import ensure_may_act_for, ensure_may_ingest_for, require_token
from app.errors import ApiError
from app.query_params import uuid_param
from app.settings import settings
from app.storage import storage
from models.imports import create_job, developer_job
from models.tables import ImportJob

bp = Blueprint("import_api", __name__)

_CHUNK = 1024 * 1024


def job_json(job: ImportJob) -> dict[str, Any]:
    progress = 1.0 if job.status == "done" else (job.bytes_read / job.file_bytes if job.file_bytes else 0.0)
    return {
        "job_id": str(job.id), "developer_id": job.developer_id, "source": job.source, "status": job.status,
        "file_bytes": job.file_bytes, "bytes_read": job.bytes_read, "progress": round(min(progress, 1.0), 4),
        "batches_done": job.batches_done, "read": job.read, "accepted": job.accepted,
        "duplicates": job.duplicates, "rejected": job.rejected, "errors": job.errors, "failure": job.failure,
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def import_path(job_id: uuid.UUID) -> Path:
    directory = Path(settings().import_dir)
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"{job_id}.json"


def save_stream(source: IO[bytes], target: Path) -> int:
    """Copy `source` to `target` a chunk at a time; the bytes written."""
    written = 0
    with open(target, "wb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
            written += len(chunk)
    return written


def record_job(job_id: uuid.UUID, developer_id: str, path: Path, size: int, *, owns_file: bool) -> dict[str, Any]:
    """Record the pending job; its JSON. `owns_file`: the file is the upload's copy, deleted once imported."""
    return storage().transaction(lambda s: job_json(create_job(s, job_id=job_id, developer_id=developer_id,
                                                               source="wakatime", file_path=str(path.resolve()),
                                                               file_bytes=size, owns_file=owns_file)))


def enqueue(job_id: uuid.UUID) -> None:
    """Queue the import (queue `maintenance`). A job left pending or running (broker down, worker lost) is run
    again, from its last counted batch, by `flask --app app data import-wakatime --resume JOB_ID`."""
    from tasks.imports import IMPORT_TASK

    current_app.extensions["celery"].send_task(IMPORT_TASK, args=[str(job_id)], queue="maintenance")


@bp.post("/api/developers/<developer_id>/import/wakatime")
@require_token
def upload_wakatime(developer_id: str):
    ensure_may_ingest_for(developer_id)
    job_id = uuid.uuid4()
    path = import_path(job_id)
    upload = request.files.get("file") if request.mimetype == "multipart/form-data" else None
    if request.mimetype == "multipart/form-data" and upload is None:
        raise ApiError(400, "missing_file", "A multipart upload must carry the export in the field `file`.",
                       [{"field": "file", "message": "missing"}])
    try:
        size = save_stream(upload.stream if upload is not None else request.stream, path)
        if size == 0:
            raise ApiError(400, "empty_upload", "The upload is empty: send the WakaTime export file as the body.",
                           [{"field": "_body", "message": "empty"}])
        job = record_job(job_id, developer_id, path, size, owns_file=True)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    enqueue(job_id)
    response = jsonify(job)
    response.headers["Location"] = f"/api/developers/{developer_id}/import/{job_id}"
    return response, 202


@bp.get("/api/developers/<developer_id>/import/<job_id>")
@require_token
def import_status(developer_id: str, job_id: str):
    ensure_may_act_for(developer_id)
    key = uuid_param("job_id", job_id)
    found = storage().transaction(lambda s: (lambda j: job_json(j) if j is not None else None)(
        developer_job(s, developer_id, key)))
    if found is None:
        raise ApiError(404, "import_not_found", f"No import {job_id} for developer '{developer_id}'.",
                       [{"field": "job_id", "message": "unknown import job"}])
    return jsonify(found), 200



