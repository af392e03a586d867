"""POST /api/workflow/events/orchestrate: validate, deduplicate and persist one batch, then hand it on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, after_this_request, current_app, g, jsonify

from activity.catalog import SUPPORTED_SCHEMA_VERSIONS
from app.auth import ensure_may_ingest_for, require_token
from app.errors import ApiError
from app.ingest.prepare import prepare_batch
from app.ingest.refusals import audit_refusals
from app.observability import EVENTS
from app.rate_limit import read_json_body_within_limits
from app.settings import settings
from app.storage import StorageUnavailable, storage
from core import tracing
from models.admin_alerts import log_admin_alert
from models.ingest import PersistOutcome, PreparedBatch, StoredBatch, persist_batch

bp = Blueprint("ingest", __name__)


def ingest(prepared: PreparedBatch) -> tuple[dict[str, Any], int]:
    """Persist a prepared batch and build the response (shared by native and compatibility endpoints).

    Every outcome leaves an audit record, written by the statements that decide it (models/ingest.py): the
    batch's trail when stored, `duplicate_batch` / `batch_conflict` for a resend, `refused` when no event is valid.
    """
    g.ingest_batch = (prepared.developer_id, str(prepared.batch_id))
    ensure_may_ingest_for(prepared.developer_id)
    if tracing.enabled():  # the request's span names its batch (a POST is never a replay)
        tracing.annotate({"batch.id": str(prepared.batch_id), "developer.id": prepared.developer_id,
                          "correlation_id": prepared.correlation_id, "is_replay": False})

    def work(session) -> PersistOutcome:
        return persist_batch(session, prepared, with_batch=False)

    try:
        outcome = storage().transaction(work)
    except StorageUnavailable as exc:
        log_admin_alert("ingest_storage_unavailable", f"Batch {prepared.batch_id} answered 503: {exc}",
                        batch_id=str(prepared.batch_id), developer_id=prepared.developer_id,
                        correlation_id=prepared.correlation_id, step="ingest",
                        event_ids=[str(e.event_id) for e in prepared.events[:50]], cause=str(exc.__cause__)[:300])
        raise ApiError(503, "storage_unavailable", str(exc), [{"field": "_storage", "message": "unavailable"}],
                       headers={"Retry-After": str(exc.retry_after)}) from exc

    if outcome.kind == "refused":
        body = _counts_body(prepared, [], [], 0)
        body["status"] = "rejected"
        _count_events(body)
        raise ApiError(422, "no_valid_events", "No event of the batch is valid.", body["errors"], body=body,
                       audited=True)
    # Both outcomes concern this developer's own earlier batch of that id (batch ids are unique per developer):
    # another developer's use of the id is never visible here.
    if outcome.kind == "conflict":
        raise ApiError(409, "batch_conflict",
                       "This batch_id was already used for different content; use a new batch_id.",
                       [{"field": "batch_id", "message": "already stored with different content"}], audited=True)
    if outcome.kind == "duplicate_batch":
        assert outcome.original is not None
        body = replayed_reply(prepared, outcome.original)
        # The access line counts what this request did: nothing new, every event already stored.
        g.ingest_counts = {"received": body["received"], "accepted": 0, "duplicates": body["received"],
                           "rejected": 0, "stored_unprocessed": 0}
        return body, 200

    if outcome.outbox_id is not None:
        _publish_after_response(outcome.outbox_id, prepared.developer_id, prepared.batch_id)
    body = _counts_body(prepared, outcome.accepted_ids, outcome.duplicate_ids, outcome.stored_unprocessed)
    _count_events(body)
    return body, 202


def replayed_reply(prepared: PreparedBatch, original: StoredBatch) -> dict[str, Any]:
    """The answer to a resend of a stored batch: the first answer again (its counts, per-event errors and
    duplicate ids), marked as a replay, like a repeated request with an idempotency key."""
    first = original.first_reply or {}
    errors = first.get("errors", [])
    body: dict[str, Any] = {
        "batch_id": str(prepared.batch_id),
        "correlation_id": g.correlation_id,
        "original_correlation_id": original.correlation_id,
        "status": "duplicate",
        # The rest of the body is the first answer's, not this request's.
        "replay_of_first_reply": True,
        "original_status": first.get("status", "partially_accepted" if original.rejected else "accepted"),
        "original_received_at": original.received_at.isoformat(),
        "received": original.received,
        "accepted": original.accepted,
        "duplicates": original.duplicates,
        "rejected": original.rejected,
        "stored_unprocessed": first.get("stored_unprocessed", 0),
        "errors": errors,
        "duplicate_event_ids": first.get("duplicate_event_ids", []),
    }
    if original.first_reply is None:
        # Stored before first replies were kept (migration 0011): the counts are known, the per-event lists not.
        body["first_reply_details_unknown"] = True
    if any(e.get("code") == "unsupported_schema_version" for e in errors):
        body["supported_schema_versions"] = list(SUPPORTED_SCHEMA_VERSIONS)
    return body


def _publish_after_response(outbox_id: int, developer_id: str, batch_id: uuid.UUID) -> None:
    """Hand the outbox record to the publisher once the response is on its way (see app/publisher.py):
    the ack never waits for the broker. If the process dies first, or the broker is down, the outbox
    relay publishes it later.
    """
    publish = current_app.extensions.get("devpulse.publish")
    if publish is None:
        return
    logger = current_app.logger
    # The request's trace, taken while its span is current (None when tracing is off): the publish continues it.
    traceparent = tracing.current_traceparent()

    @after_this_request
    def _schedule(response):
        def _run() -> None:
            try:
                publish(outbox_id, developer_id, batch_id, traceparent)
            except Exception:  # events are safe in PostgreSQL; the relay retries
                logger.warning("publish after commit failed; the outbox relay will retry", exc_info=True)

        response.call_on_close(_run)
        return response


def _count_events(body: dict[str, Any]) -> None:
    g.ingest_counts = {k: body[k] for k in ("received", "accepted", "duplicates", "rejected", "stored_unprocessed")}
    for outcome in ("accepted", "duplicates", "rejected"):
        if body[outcome]:
            EVENTS.labels(outcome).inc(body[outcome])


def _counts_body(prepared: PreparedBatch, accepted: list[str], duplicates: list[str],
                 stored_unprocessed: int) -> dict[str, Any]:
    body = {
        "batch_id": str(prepared.batch_id),
        "correlation_id": g.correlation_id,
        "status": "partially_accepted" if prepared.rejections else "accepted",
        "received": prepared.received,
        "accepted": len(accepted),
        "duplicates": len(duplicates),
        "rejected": len(prepared.rejections),
        # Accepted events of a type this server does not know yet (newer 1.x minor): kept, processed later.
        "stored_unprocessed": stored_unprocessed,
        "errors": [r.as_dict() for r in prepared.rejections],
        "duplicate_event_ids": duplicates,
    }
    if any(r.code == "unsupported_schema_version" for r in prepared.rejections):
        body["supported_schema_versions"] = list(SUPPORTED_SCHEMA_VERSIONS)
    return body


def _batch_events(body: Any) -> int:
    """The events a batch body carries, as the rate limiter counts them (O(1): the list's length)."""
    events = body.get("events") if isinstance(body, dict) else None
    return len(events) if isinstance(events, list) else 0


@bp.post("/api/workflow/events/orchestrate")
@require_token
@audit_refusals
def orchestrate():
    cfg = settings()
    received_at = datetime.now(UTC)
    body = read_json_body_within_limits(cfg, _batch_events)
    prepared = prepare_batch(body, correlation_id=g.correlation_id, received_at=received_at, settings=cfg)
    response, status = ingest(prepared)
    return jsonify(response), status
