"""Building and publishing a batch's chord, from an outbox record, after the ingest commit.

The publish happens inside the transaction that claims the outbox record, so
the record is marked dispatched only if the broker took the messages; if the
broker is down the record stays pending and the relay retries with backoff.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import chord, group

from models.breakers import breakers
from models.db import Database
from models.outbox import claim, claim_due, finish_dispatch, record_failure, start_dispatch
from models.settings import Settings

log = logging.getLogger("devpulse.canvas")

HEADER_JOBS = ("aggregate", "normalize", "detect_danger")


def task_ids(ctx: dict[str, Any]) -> dict[str, str]:
    """Readable, unique task ids: search a batch id in Flower to find all of its tasks."""
    prefix = f"{ctx['batch_id']}.{ctx['attempt']}"
    return {job: f"{prefix}.{job}" for job in (*HEADER_JOBS, "mark_batch_processed")}


def build_chord(ctx: dict[str, Any]) -> chord:
    from tasks.pipeline import aggregate, detect_danger, mark_batch_failed, mark_batch_processed, normalize

    ids = task_ids(ctx)
    headers = {"correlation_id": ctx["correlation_id"], "batch_id": ctx["batch_id"]}
    header = group(
        sig.clone(args=(ctx,)).set(task_id=ids[name], headers=headers)
        for name, sig in (("aggregate", aggregate.s()), ("normalize", normalize.s()),
                          ("detect_danger", detect_danger.s()))
    )
    body = mark_batch_processed.s(ctx).set(task_id=ids["mark_batch_processed"], headers=headers)
    body.on_error(mark_batch_failed.s(ctx=ctx))
    return chord(header, body)


class BrokerUnavailable(ConnectionError):
    """The chord could not be handed to Redis (broker or result backend)."""


def _publish(ctx: dict[str, Any]) -> None:
    broker = breakers.get("broker", fail_max=3, reset_timeout=5)

    def send() -> None:
        try:
            # retry=False: a dead broker must fail fast here; the outbox relay owns retrying.
            build_chord(ctx).apply_async(retry=False)
        except Exception as exc:
            # Celery's result consumer reports an unreachable Redis as a plain RuntimeError ("Retry limit
            # exceeded ..."); the breaker would count that as a success and never open.
            raise BrokerUnavailable(f"{type(exc).__name__}: {str(exc).strip()}") from exc

    broker.call(send)


def dispatch_record(db: Database, settings: Settings, outbox_id: int, *, due_only: bool = False) -> bool:
    """Publish one pending outbox record. Returns True if this call published it."""
    try:
        with db.transaction() as session:
            record = claim(session, outbox_id, due_only=due_only)
            if record is None:
                return False
            ctx = start_dispatch(session, record)
            _publish(ctx)
            finish_dispatch(session, record, task_ids(ctx))
        log.info("dispatched", extra={"batch_id": ctx["batch_id"], "correlation_id": ctx["correlation_id"],
                                      "step": "dispatched"})
        return True
    except Exception as exc:
        log.warning("publish of outbox %s failed: %s", outbox_id, exc)
        with db.transaction() as session:
            record_failure(session, outbox_id, f"{type(exc).__name__}: {exc}",
                           max_attempts=settings.outbox_max_attempts, base=settings.outbox_base_delay_seconds,
                           cap=settings.outbox_max_delay_seconds)
        return False


def relay(db: Database, settings: Settings, limit: int = 50) -> dict[str, int]:
    """Publish every due pending record (beat runs this every few seconds)."""
    with db.transaction() as session:
        due = [r.id for r in claim_due(session, limit)]
    published = sum(1 for outbox_id in due if dispatch_record(db, settings, outbox_id, due_only=True))
    return {"due": len(due), "published": published}
