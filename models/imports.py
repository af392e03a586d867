"""History import jobs (import_jobs): created by the upload or the CLI, advanced one stored batch at a time.

A batch's events and the job's progress for it are written in one transaction (the caller's, around
`persist_batch`), so the counts are exactly-once too: a re-run of a crashed job skips the batches already counted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from models.tables import ImportJob

# Errors kept per job (each with its position in the file): a file of only bad heartbeats must not grow the row.
MAX_LISTED_ERRORS = 100


@dataclass(frozen=True)
class BatchProgress:
    read: int
    accepted: int
    duplicates: int
    rejected: int
    bytes_read: int
    errors: list[dict[str, Any]]


def create_job(session: Session, *, job_id: uuid.UUID, developer_id: str, source: str, file_path: str,
               file_bytes: int, owns_file: bool) -> ImportJob:
    job = ImportJob(id=job_id, developer_id=developer_id, source=source, file_path=file_path,
                    file_bytes=file_bytes, owns_file=owns_file, status="pending")
    session.add(job)
    session.flush()
    return job


def developer_job(session: Session, developer_id: str, job_id: uuid.UUID) -> ImportJob | None:
    """The job if it belongs to this developer (another developer's job id is not found)."""
    job = session.get(ImportJob, job_id)
    return job if job is not None and job.developer_id == developer_id else None


def lock_job(session: Session, job_id: uuid.UUID) -> ImportJob | None:
    """The job, locked until the transaction ends: one runner advances it at a time."""
    return session.execute(select(ImportJob).where(ImportJob.id == job_id).with_for_update()).scalar_one_or_none()


def start_job(session: Session, job_id: uuid.UUID) -> ImportJob | None:
    """Mark the job running (again, on a re-run); None when it is finished or unknown."""
    job = lock_job(session, job_id)
    if job is None or job.status in ("done", "failed"):
        return None
    job.status = "running"
    if job.started_at is None:
        job.started_at = func.now()
    session.flush()
    return job


def record_batch(session: Session, job: ImportJob, progress: BatchProgress) -> None:
    """Count one stored batch on the (locked) job, in the transaction that stored it."""
    room = MAX_LISTED_ERRORS - len(job.errors)
    session.execute(update(ImportJob).where(ImportJob.id == job.id).values(
        batches_done=ImportJob.batches_done + 1,
        bytes_read=progress.bytes_read,
        read=ImportJob.read + progress.read,
        accepted=ImportJob.accepted + progress.accepted,
        duplicates=ImportJob.duplicates + progress.duplicates,
        rejected=ImportJob.rejected + progress.rejected,
        errors=[*job.errors, *progress.errors[:max(room, 0)]],
    ))


def finish_job(session: Session, job_id: uuid.UUID, *, failure: str | None = None) -> None:
    session.execute(update(ImportJob).where(ImportJob.id == job_id).values(
        status="failed" if failure is not None else "done", failure=failure, finished_at=func.now(),
        bytes_read=ImportJob.file_bytes if failure is None else ImportJob.bytes_read))
