"""The operator view (admin tokens only): pipeline health, circuit breakers with reset, admin alerts, and
finding a batch by id to replay it after a confirmation step (models/operations.replay, as `celery replay`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from flask import current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from app.batches import batch_view
from app.pages import bp
from app.pages.session_auth import admin_required
from app.settings import settings
from app.storage import database, storage
from core.breakers import breakers
from models import operations
from models.batch_lifecycle import batch_owners, batch_with_jobs
from models.health import outbox_backlog
from models.pipeline_health import batches_per_status, processing_lag, quarantined_count, recent_admin_alerts
from tasks.celery_app import QUEUES

STATUS_WINDOW = timedelta(hours=24)
LAG_WINDOW = timedelta(hours=1)


def queue_depths() -> dict[str, int | None]:
    """Messages waiting per Celery queue (a Redis list each); None when Redis does not answer."""
    client = redis.Redis.from_url(settings().redis_url, socket_connect_timeout=1, socket_timeout=1)
    try:
        with client.pipeline() as pipe:
            for name in QUEUES:
                pipe.llen(name)
            return dict(zip(QUEUES, (int(n) for n in pipe.execute()), strict=True))
    except redis.RedisError:
        return {name: None for name in QUEUES}
    finally:
        client.close()


def _found_batch(raw: str) -> tuple[list[dict[str, Any]], str | None]:
    """The batches with this id (one per developer using it), or the reason none is shown."""
    try:
        bid = uuid.UUID(raw)
    except ValueError:
        return [], f"batch_id: '{raw[:40]}' is not a UUID"

    def read(s: Session) -> list[dict[str, Any]]:
        found = [batch_with_jobs(s, owner, bid) for owner in batch_owners(s, bid)]
        return [batch_view(*f) for f in found if f is not None]

    views = storage().transaction(read)
    return views, None if views else f"batch_id: no batch {bid}"


@bp.get("/operator")
@admin_required
def operator() -> ResponseReturnValue:
    now = datetime.now(UTC)

    def read(s: Session) -> dict[str, Any]:
        return {"statuses": batches_per_status(s, now - STATUS_WINDOW), "lag": processing_lag(s, now - LAG_WINDOW),
                "outbox": outbox_backlog(s), "quarantined": quarantined_count(s),
                "admin_alerts": recent_admin_alerts(s)}

    data = storage().transaction(read)
    raw = request.args.get("batch", "").strip()
    found, not_found = _found_batch(raw) if raw else ([], None)
    return render_template("operator.html", queues=queue_depths(), breakers=breakers.describe(),
                           flower_url=settings().flower_url, batch_query=raw, found=found, not_found=not_found,
                           **data)


@bp.post("/operator/breakers/<name>/reset")
@admin_required
def reset_breaker(name: str) -> ResponseReturnValue:
    ok = breakers.reset(name)
    flash(f"Circuit breaker '{name}' reset (this web process)." if ok else f"name: no circuit breaker '{name[:64]}'",
          "info" if ok else "error")
    return redirect(url_for("pages.operator"), code=303)


@bp.route("/operator/replay/<developer_id>/<batch_id>", methods=["GET", "POST"])
@admin_required
def replay(developer_id: str, batch_id: str) -> ResponseReturnValue:
    """GET: the confirmation step; POST (confirmed): replay the batch, then show it."""
    views, problem = _found_batch(batch_id)
    views = [v for v in views if v["developer_id"] == developer_id]
    if not views:
        return render_template("error.html", title="No such batch",
                               message=problem or f"batch_id: no batch {batch_id} of {developer_id}"), 404
    if request.method == "GET":
        return render_template("replay_confirm.html", batch=views[0])
    from tasks.dispatch import dispatch_record

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    rows = operations.replay(database(), lambda outbox_id: dispatch_record(database(), app.extensions["celery"],
                                                                           outbox_id),
                             batch_id=uuid.UUID(views[0]["batch_id"]), developer_id=developer_id,
                             requested_by=f"dashboard (admin token {g.principal.token_id})")
    row = rows[0]
    flash(f"Batch {row.batch_id}: {row.action}" + (f" ({row.reason})" if row.action == "skipped" else ""),
          "error" if row.action == "skipped" else "info")
    return redirect(url_for("pages.operator", batch=row.batch_id), code=303)
