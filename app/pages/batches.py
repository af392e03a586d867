"""A developer's recent batches (status, counts, lifecycle timings) and one batch: its jobs, the reason of each
rejected event, and its stored events in batch order. Reads the functions of GET /api/workflow/batches/<id>."""

from __future__ import annotations

import uuid
from typing import Any

from flask import g, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from app.batches import batch_view
from app.event_pages import event_view
from app.pages import bp
from app.pages.developer import chosen_developer
from app.pages.session_auth import forbidden, login_required
from app.storage import storage
from models.audit_chain import batch_trail
from models.batch_lifecycle import batch_with_jobs
from models.event_reader import stored_event_rows
from models.operations import list_batches
from models.pipeline_health import known_developers

EVENTS_SHOWN = 500


def _seconds(start: str | None, end: str | None) -> float | None:
    from datetime import datetime

    if not start or not end:
        return None
    return round((datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds(), 3)


def timings(view: dict[str, Any]) -> dict[str, float | None]:
    """The lifecycle's steps in seconds: received -> dispatched -> processing started -> completed."""
    return {"to_dispatch": _seconds(view["received_at"], view["dispatched_at"]),
            "to_start": _seconds(view["dispatched_at"], view["processing_started_at"]),
            "processing": _seconds(view["processing_started_at"], view["completed_at"]),
            "total": _seconds(view["received_at"], view["completed_at"])}


@bp.get("/batches")
@login_required
def batches() -> ResponseReturnValue:
    developer_id = chosen_developer()
    if developer_id is None:
        return render_template("pick_developer.html", developers=storage().transaction(known_developers),
                               target="pages.batches")
    if not isinstance(developer_id, str):
        return developer_id
    views = storage().transaction(lambda s: [batch_view(b, []) for b in list_batches(s, developer_id=developer_id)])
    return render_template("batches.html", developer_id=developer_id,
                           batches=[(v, timings(v)) for v in views])


@bp.get("/batches/<batch_id>")
@login_required
def batch(batch_id: str) -> ResponseReturnValue:
    developer_id = chosen_developer()
    if not isinstance(developer_id, str):
        return developer_id or forbidden("developer: choose whose batch this is (?developer=).")
    try:
        bid = uuid.UUID(batch_id)
    except ValueError:
        return forbidden("batch_id: not a UUID.")

    def read(s: Session) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]], bool] | None:
        found = batch_with_jobs(s, developer_id, bid)
        if found is None:
            return None
        rows = stored_event_rows(s, developer_id=developer_id, batch_id=bid, limit=EVENTS_SHOWN + 1)
        trail = batch_trail(s, developer_id, bid) or []
        rejections = [r for record in trail if record["step"] == "validated"
                      for r in (record["details"] or {}).get("rejections", [])]
        return batch_view(*found), [event_view(r) for r in rows[:EVENTS_SHOWN]], rejections, len(rows) > EVENTS_SHOWN

    result = storage().transaction(read)
    if result is None:
        return render_template("error.html", title="No such batch",
                               message=f"batch_id: no batch {bid} of developer {developer_id}."), 404
    view, events, rejections, more = result
    return render_template("batch.html", batch=view, timings=timings(view), events=events, rejections=rejections,
                           more=more, developer_id=developer_id, is_admin=g.principal.is_admin,
                           query={"developer": developer_id} if request.args.get("developer") else {})
