"""POST /api/workflow/events/orchestrate: validate, deduplicate and persist one batch, then hand it on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, after_this_request, current_app, g, jsonify

from activity.catalog import SUPPORTED_SCHEMA_VERSIONS
from app.auth import ensure_may_act_for, require_token
from app.errors import ApiError
from app.ingest.prepare import prepare_batch
from app.observability import EVENTS
from app.rate_limit import check_rate_limit
from app.request_body import read_json_body
from app.settings import settings
from app.storage import StorageUnavailable, storage
from core import tracing
from models.admin_alerts import log_admin_alert
from models.ingest import PersistOutcome, PreparedBatch, persist_batch

bp = Blueprint("ingest", __name__)


class _NothingValid(Exception):
    """Raised inside the transaction so a batch with no valid event leaves nothing behind."""


def ingest(prepared: PreparedBatch) -> tuple[dict[str, Any], int]:
    """Persist a prepared batch and build the response (shared by native and compatibility endpoints)."""
    ensure_may_act_for(prepared.developer_id)
    if tracing.enabled():  # the request's span names its batch (a POST is never a replay)
        tracing.annotate({"batch.id": str(prepared.batch_id), "developer.id": prepared.developer_id,
                          "correlation_id": prepared.correlation_id, "is_replay": False})

    def work(session) -> PersistOutcome:
        outcome = persist_batch(session, prepared, with_batch=False)
        if outcome.kind == "stored" and not outcome.accepted_ids and not outcome.duplicate_ids:
            raise _NothingValid
        return outcome

    try:
        outcome = storage().transaction(work)
    except _NothingValid:
        body = _counts_body(prepared, [], [])
        body["status"] = "rejected"
        _count_events(body)
        raise ApiError(422, "no_valid_events", "No event of the batch is valid.", body["errors"], body=body) from None
    except StorageUnavailable as exc:
        log_admin_alert("ingest_storage_unavailable", f"Batch {prepared.batch_id} answered 503: {exc}",
                        batch_id=str(prepared.batch_id), developer_id=prepared.developer_id,
                        correlation_id=prepared.correlation_id, step="ingest",
                        event_ids=[str(e.event_id) for e in prepared.events[:50]], cause=str(exc.__cause__)[:300])
        raise ApiError(503, "storage_unavailable", str(exc), [{"field": "_storage", "message": "unavailable"}],
                       headers={"Retry-After": str(exc.retry_after)}) from exc

    # Both outcomes concern this developer's own earlier batch of that id (batch ids are unique per developer):
    # another developer's use of the id is never visible here.
    if outcome.kind == "conflict":
        raise ApiError(409, "batch_conflict",
                       "This batch_id was already used for different content; use a new batch_id.",
                       [{"field": "batch_id", "message": "already stored with different content"}])
    if outcome.kind == "duplicate_batch":
        assert outcome.batch is not None
        return {
            "batch_id": str(prepared.batch_id),
            "correlation_id": g.correlation_id,
            "original_correlation_id": outcome.batch.correlation_id,
            "status": "duplicate",
            "received": prepared.received,
            "accepted": 0,
            "duplicates": prepared.received,
            "rejected": 0,
            "errors": [],
            "duplicate_event_ids": [],
        }, 200

    if outcome.outbox_id is not None:
        _publish_after_response(outcome.outbox_id, prepared.developer_id, prepared.batch_id)
    body = _counts_body(prepared, outcome.accepted_ids, outcome.duplicate_ids)
    _count_events(body)
    return body, 202


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
    for outcome in ("accepted", "duplicates", "rejected"):
        if body[outcome]:
            EVENTS.labels(outcome).inc(body[outcome])


def _counts_body(prepared: PreparedBatch, accepted: list[str], duplicates: list[str]) -> dict[str, Any]:
    body = {
        "batch_id": str(prepared.batch_id),
        "correlation_id": g.correlation_id,
        "status": "partially_accepted" if prepared.rejections else "accepted",
        "received": prepared.received,
        "accepted": len(accepted),
        "duplicates": len(duplicates),
        "rejected": len(prepared.rejections),
        "errors": [r.as_dict() for r in prepared.rejections],
        "duplicate_event_ids": duplicates,
    }
    if any(r.code == "unsupported_schema_version" for r in prepared.rejections):
        body["supported_schema_versions"] = list(SUPPORTED_SCHEMA_VERSIONS)
    return body


@bp.post("/api/workflow/events/orchestrate")
@require_token
def orchestrate():
    cfg = settings()
    received_at = datetime.now(UTC)
    check_rate_limit(g.principal.token_id)
    body = read_json_body(cfg.max_body_bytes)
    prepared = prepare_batch(body, correlation_id=g.correlation_id, received_at=received_at, settings=cfg)
    response, status = ingest(prepared)
    return jsonify(response), status
