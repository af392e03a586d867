"""Importing a WakaTime data export: streamed from disk, stored in bounded batches through the normal ingest rules.

The export ("Export your data" on wakatime.com, a JSON file) is assumed to be shaped as
    {"user": {...}, "range": {...}, "days": [{"date": "2026-01-31", "heartbeats": [{...}, ...]}, ...]}
where each heartbeat has the fields the plugins send (entity, type, category, time, project, branch, language,
is_write, lines, lineno, cursorpos, dependencies, ...) plus WakaTime's own (id, created_at, user_agent_id,
machine_name_id): everything but `days[].heartbeats[]` (and each day's `date`, kept for error positions) is ignored.

Reading: ijson's event parser, one heartbeat object built at a time, so memory is bounded by one batch whatever
the file's size (a day with a million heartbeats is never held whole either).

Each heartbeat goes through the WakaTime mapping (activity/wakatime_mapping.py: the same event id as a live
heartbeat, so imports and live sends store each heartbeat once) and each batch of at most IMPORT_BATCH_SIZE
through `prepare_batch` + `persist_batch` + the outbox: validation, exactly-once per event id, then the pipeline.
One rule differs from live ingest: the age limit is IMPORT_MAX_AGE_DAYS, not MAX_EVENT_AGE_DAYS (history is old
by nature); events in the future are rejected as always. A heartbeat that fails validation is counted and listed
with its position (day, heartbeat index), never fatal; an unreadable file (not JSON) fails the job, keeping what
was stored before the damage.

Batch ids are uuid5(job id, batch index), and a batch's events and the job's counts commit together, so a re-run
of a crashed job skips the batches already counted and stores nothing twice.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import IO, Any

import ijson
from celery import Celery

from activity.wakatime_mapping import import_batch_id, native_batch_body
from app.ingest.prepare import prepare_batch
from core.settings import Settings
from models.db import Database
from models.imports import BatchProgress, finish_job, lock_job, record_batch, start_job
from models.ingest import PersistOutcome, PreparedBatch, persist_batch
from tasks.dispatch import dispatch_record

log = logging.getLogger("devpulse.import")

IMPORT_BATCH_SIZE = 1000
SOURCE = "wakatime_import"
_HEARTBEAT = "days.item.heartbeats.item"
_CLIENT = {"editor": "wakatime", "extension_version": "data-export-import"}


@dataclass(frozen=True)
class Position:
    """Where a heartbeat is in the export: the day (its index, and its date when given before the heartbeats)
    and the heartbeat's index within that day."""

    day_index: int
    date: str | None
    heartbeat_index: int

    def as_dict(self) -> dict[str, Any]:
        return {"day_index": self.day_index, "date": self.date, "heartbeat_index": self.heartbeat_index}


class NotAnExport(ValueError):
    pass


def read_export(stream: IO[bytes]) -> Iterator[tuple[Any, Position]]:
    """Each heartbeat of the export with its position, in file order, one at a time."""
    day_index, date, heartbeat_index = -1, None, -1
    builder: Any = None
    depth = 0
    saw_days = False
    for prefix, event, value in ijson.parse(stream, use_float=True):
        if builder is not None:
            builder.event(event, value)
            if event in ("start_map", "start_array"):
                depth += 1
            elif event in ("end_map", "end_array"):
                depth -= 1
                if depth == 0:
                    yield builder.value, Position(day_index, date, heartbeat_index)
                    builder = None
            continue
        if prefix == "days" and event == "start_array":
            saw_days = True
        elif prefix == "days.item" and event == "start_map":
            day_index, date, heartbeat_index = day_index + 1, None, -1
        elif prefix == "days.item.date" and event == "string":
            date = value[:32]
        elif prefix == _HEARTBEAT:
            heartbeat_index += 1
            if event in ("start_map", "start_array"):
                builder = ijson.ObjectBuilder()
                builder.event(event, value)
                depth = 1
            else:  # a scalar where a heartbeat belongs: rejected by validation like any malformed heartbeat
                yield value, Position(day_index, date, heartbeat_index)
    if not saw_days:
        raise NotAnExport("the file has no top-level \"days\" array: not a WakaTime data export")


def _batches(heartbeats: Iterator[tuple[Any, Position]], size: int) -> Iterator[list[tuple[Any, Position]]]:
    batch: list[tuple[Any, Position]] = []
    for item in heartbeats:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _progress(prepared: PreparedBatch, outcome: PersistOutcome, positions: list[Position],
              bytes_read: int) -> BatchProgress:
    rejected = len(prepared.rejections)
    if outcome.kind == "stored":
        accepted, duplicates = len(outcome.accepted_ids), len(outcome.duplicate_ids)
    elif outcome.kind == "refused":
        accepted, duplicates = 0, 0
    else:  # "duplicate_batch": stored by a run whose count was lost (cannot happen: they commit together)
        accepted, duplicates = 0, prepared.received - rejected
    errors = [{**positions[r.index].as_dict(), "code": r.code, "field": r.field, "message": r.message}
              for r in prepared.rejections]
    return BatchProgress(read=prepared.received, accepted=accepted, duplicates=duplicates, rejected=rejected,
                         bytes_read=bytes_read, errors=errors)


def _store_batch(db: Database, celery: Celery | None, settings: Settings, job_id: uuid.UUID, developer_id: str,
                 index: int, batch: list[tuple[Any, Position]], bytes_read: int) -> bool:
    """Store one batch and count it on the job; False when the job is gone (erased) or another run counted it."""
    received_at = datetime.now(UTC)
    body = native_batch_body(developer_id, [hb for hb, _ in batch], batch_id=import_batch_id(str(job_id), index),
                             sent_at=received_at, client=dict(_CLIENT))
    prepared = prepare_batch(body, correlation_id=f"import-{job_id}", received_at=received_at,
                             settings=settings, source=SOURCE)
    with db.transaction() as session:
        job = lock_job(session, job_id)
        if job is None or job.batches_done != index:
            return False
        outcome = persist_batch(session, prepared, with_batch=False)
        if outcome.kind == "conflict":  # the same (job, index) always holds the same heartbeats
            raise RuntimeError(f"import batch {prepared.batch_id} conflicts with a stored batch")
        record_batch(session, job, _progress(prepared, outcome, [p for _, p in batch], bytes_read))
    if outcome.outbox_id is not None and celery is not None:
        try:
            dispatch_record(db, celery, outcome.outbox_id)
        except Exception:  # the events are stored; the outbox relay publishes the record later
            log.warning("publishing import batch %s failed; the outbox relay will retry", prepared.batch_id,
                        exc_info=True)
    return True


def run_import(db: Database, celery: Celery | None, settings: Settings, job_id: uuid.UUID,
               batch_size: int = IMPORT_BATCH_SIZE) -> None:
    """Run (or resume) the job to its end: done, or failed with the reason when the file cannot be read."""
    with db.transaction() as session:
        job = start_job(session, job_id)
        if job is None:
            return
        developer_id, path, done, owns_file = job.developer_id, job.file_path, job.batches_done, job.owns_file
    # Imports carry history: the import age limit replaces the live one; every other rule is ingest's own.
    import_settings = replace(settings, max_event_age_days=settings.import_max_age_days)
    size = max(1, min(batch_size, settings.max_events_per_batch))
    try:
        with open(path, "rb") as stream:
            for index, batch in enumerate(_batches(read_export(stream), size)):
                if index < done:
                    continue  # counted by an earlier run
                if not _store_batch(db, celery, import_settings, job_id, developer_id, index, batch,
                                    stream.tell()):
                    return
    except (ijson.JSONError, NotAnExport, OSError, UnicodeDecodeError) as exc:
        log.warning("import %s failed: %s", job_id, exc, extra={"step": "import"})
        with db.transaction() as session:
            finish_job(session, job_id, failure=str(exc)[:500])
        return
    with db.transaction() as session:
        finish_job(session, job_id)
    if owns_file:  # the upload's copy: imported, so no longer needed (a failed job keeps it for a look)
        os.unlink(path)
