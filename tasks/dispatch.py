"""Building and publishing a batch's chord, from an outbox record, after the ingest commit.

The publish happens inside the transaction that claims the outbox record, so
the record is marked dispatched only if the broker took the messages; if the
broker is down the record stays pending and the relay retries with backoff.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from celery import Celery, chord, group

from core import tracing
from core.breakers import breakers
from core.settings import Settings
from models.batch_lifecycle import HEADER_JOBS
from models.db import Database
from models.outbox import (
    already_served,
    claim,
    claim_due,
    finish_dispatch,
    lock_batch,
    record_failure,
    skip_dispatch,
    start_dispatch,
    start_fresh_dispatch,
)

log = logging.getLogger("devpulse.canvas")

# The span around a publish of an outbox record (tracing on): Celery's own publish spans are its children.
PUBLISH_SPAN = "outbox publish"


def task_ids(ctx: dict[str, Any]) -> dict[str, str]:
    """Readable, unique task ids: search a batch id in Flower to find all of its tasks.

    `<batch_id>.<attempt>.<job>.<developer>`, where <developer> is 8 hex digits of the SHA-256 of the developer
    id: a batch id is unique per developer only, and two developers' batches with one id must not share task
    ids (nor their results). The developer id itself may be long (task_id is stored in 64 characters).
    """
    prefix = f"{ctx['batch_id']}.{ctx['attempt']}"
    developer = hashlib.sha256(ctx["developer_id"].encode("utf-8")).hexdigest()[:8]
    return {job: f"{prefix}.{job}.{developer}" for job in (*HEADER_JOBS, "mark_batch_processed")}


def build_chord(celery: Celery, ctx: dict[str, Any]) -> chord:
    """The batch's canvas, by task name: the publisher needs the task names, not the task code."""
    ids = task_ids(ctx)
    # What Flower and `celery inspect` show as the arguments. Given here, Celery skips its own repr of the
    # context (a tenth of the publish's CPU).
    shown = f"(batch {ctx['batch_id']} of {ctx['developer_id']!r}, attempt {ctx['attempt']})"
    options = {"headers": {"correlation_id": ctx["correlation_id"], "batch_id": ctx["batch_id"]},
               "argsrepr": shown, "kwargsrepr": "{}"}
    header = group(
        [celery.signature(f"devpulse.{job}", args=(ctx,)).set(task_id=ids[job], **options) for job in HEADER_JOBS],
        app=celery,
    )
    body = celery.signature("devpulse.mark_batch_processed", args=(ctx,)).set(
        task_id=ids["mark_batch_processed"], **options)
    body.on_error(celery.signature("devpulse.mark_batch_failed", kwargs={"ctx": ctx}))
    return chord(header, body, app=celery)


class BrokerUnavailable(ConnectionError):
    """The chord could not be handed to Redis (broker or result backend)."""


def _publish(celery: Celery, ctx: dict[str, Any]) -> None:
    broker = breakers.get("broker", fail_max=3, reset_timeout=5)

    def send() -> None:
        try:
            # retry=False: a dead broker must fail fast here; the outbox relay owns retrying.
            build_chord(celery, ctx).apply_async(retry=False)
        except Exception as exc:
            # Celery's result consumer reports an unreachable Redis as a plain RuntimeError ("Retry limit
            # exceeded ..."); the breaker would count that as a success and never open.
            raise BrokerUnavailable(f"{type(exc).__name__}: {str(exc).strip()}") from exc

    broker.call(send)


def dispatch_record(db: Database, celery: Celery, outbox_id: int, *, due_only: bool = False) -> bool:
    """Publish one pending outbox record through `celery`. Returns True if this call published it."""
    def attempt() -> dict[str, Any] | None:
        with ExitStack() as traced:
            with db.transaction() as session:
                record = claim(session, outbox_id, due_only=due_only)
                if record is None:
                    return None
                # The publish continues the trace of the request that wrote the record (nothing if tracing is off).
                traced.enter_context(tracing.span(PUBLISH_SPAN, traceparent=record.traceparent))
                batch = lock_batch(session, record)
                served = already_served(batch, record)
                if served is not None:
                    skip_dispatch(session, record, served)
                    log.info("outbox %s not published again: %s", outbox_id, served,
                             extra={"batch_id": str(record.batch_id), "correlation_id": record.correlation_id,
                                    "step": "dispatch_skipped", "is_replay": record.is_replay})
                    return None
                ctx = start_dispatch(session, record, batch)
                tracing.annotate_batch(ctx)
                _publish(celery, ctx)
                finish_dispatch(session, outbox_id, ctx, task_ids(ctx))
            _log_dispatched(ctx)
        return ctx

    return _publishing(db, celery, outbox_id, attempt) is True


def dispatch_fresh(db: Database, celery: Celery, outbox_id: int, developer_id: str, batch_id: uuid.UUID,
                   traceparent: str | None = None) -> bool:
    """The web's publish of the record its own request has just committed: two statements around the publish
    (models/outbox.py start_fresh_dispatch); anything unusual goes the general way (`dispatch_record`).
    `traceparent`: the request's trace (the one stored on the record), continued by the publish."""
    def attempt() -> dict[str, Any] | None:
        with tracing.span(PUBLISH_SPAN, traceparent=traceparent):
            with db.transaction() as session:
                ctx = start_fresh_dispatch(session, outbox_id, developer_id, batch_id)
                if ctx is not None:
                    tracing.annotate_batch(ctx)
                    _publish(celery, ctx)
                    finish_dispatch(session, outbox_id, ctx, task_ids(ctx))
            if ctx is not None:
                _log_dispatched(ctx)
        return ctx

    published = _publishing(db, celery, outbox_id, attempt)
    return published if published is not None else dispatch_record(db, celery, outbox_id)


def _publishing(db: Database, celery: Celery, outbox_id: int,
                attempt: Callable[[], dict[str, Any] | None]) -> bool | None:
    """Run a publish attempt: True if it published, None if it declined, False if it failed (the failure is
    counted on the record: backoff, then dead letter, for the relay)."""
    settings: Settings = celery.conf.devpulse_settings
    try:
        ctx = attempt()
    except Exception as exc:
        log.warning("publish of outbox %s failed: %s", outbox_id, exc)
        with db.transaction() as session:
            record_failure(session, outbox_id, f"{type(exc).__name__}: {exc}",
                           max_attempts=settings.outbox_max_attempts, base=settings.outbox_base_delay_seconds,
                           cap=settings.outbox_max_delay_seconds)
        return False
    if ctx is None:
        return None
    return True


def _log_dispatched(ctx: dict[str, Any]) -> None:
    # Written inside the publish's span, so that with tracing on the line carries its trace id.
    log.info("dispatched", extra={"batch_id": ctx["batch_id"], "developer_id": ctx["developer_id"],
                                  "correlation_id": ctx["correlation_id"], "step": "dispatched",
                                  "is_replay": bool(ctx["is_replay"]), "attempt": ctx["attempt"]})


def relay(db: Database, celery: Celery, limit: int = 50) -> dict[str, int]:
    """Publish every due pending record (beat runs this every few seconds)."""
    with db.transaction() as session:
        due = [r.id for r in claim_due(session, limit)]
    published = sum(1 for outbox_id in due if dispatch_record(db, celery, outbox_id, due_only=True))
    return {"due": len(due), "published": published}
