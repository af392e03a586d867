"""Alerts for the developer: list (by priority), acknowledge, the events behind one (stream: app/alert_stream.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, g, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from activity.danger import behind
from app.auth import ensure_may_act_for, require_token
from app.errors import ApiError
from app.event_pages import event_view, next_cursor, page_params
from app.query_params import time_param, uuid_param
from app.storage import storage
from models.alerts import acknowledge, alert_document, list_alerts
from models.event_reader import stored_event_rows, to_event
from models.tables import Alert

bp = Blueprint("alerts_api", __name__)


@bp.get("/api/developers/<developer_id>/alerts")
@require_token
def get_alerts(developer_id: str):
    ensure_may_act_for(developer_id)
    status = request.args.get("status")
    if status not in (None, "open", "acknowledged", "withdrawn"):
        raise ApiError(400, "invalid_parameter", "'status' must be 'open', 'acknowledged' or 'withdrawn'.",
                       [{"field": "status", "message": f"got '{(status or '')[:20]}'"}])
    since = time_param("since")
    alerts = storage().transaction(lambda s: [alert_document(a) for a in list_alerts(s, developer_id, status=status,
                                                                          since=since)])
    return jsonify({"developer_id": developer_id, "alerts": alerts})


@bp.post("/api/developers/<developer_id>/alerts/<alert_id>/ack")
@require_token
def ack_alert(developer_id: str, alert_id: str):
    ensure_may_act_for(developer_id)
    aid = uuid_param("alert_id", alert_id)
    view = storage().transaction(
        lambda s: (a := acknowledge(s, developer_id, aid, datetime.now(UTC))) and alert_document(a)
    )
    if not view:
        raise ApiError(404, "alert_not_found", f"No alert {aid} for developer '{developer_id}'.",
                       [{"field": "alert_id", "message": "not found"}])
    return jsonify(view)


@bp.get("/api/alerts/<alert_id>/events")
@require_token
def alert_events(alert_id: str) -> ResponseReturnValue:
    """The stored events an alert was measured from (those of its pattern inside its window), in time order."""
    aid = uuid_param("alert_id", alert_id)
    limit, after = page_params()

    def read(s: Session) -> tuple[Alert | None, list[Any], bool]:
        alert = s.get(Alert, aid)
        if alert is None or not g.principal.may_act_for(alert.developer_id):
            return None, [], False
        found: list[Any] = []
        position = after
        # Read pages of the window until `limit` events of the pattern are found (bounded by the window).
        while len(found) <= limit:
            rows = stored_event_rows(s, developer_id=alert.developer_id, since=alert.window_start,
                                     until=alert.window_end, after=position, limit=500)
            for row in rows:
                if behind(alert.pattern, to_event(row), alert.details):
                    found.append(row)
            if len(rows) < 500:
                break
            last = rows[-1]
            position = (last.corrected_ts, last.received_at, last.seq, last.event_id)
        return alert, found, len(found) > limit

    alert, rows, more = storage().transaction(read)
    if alert is None:
        raise ApiError(404, "alert_not_found", f"No alert {aid} visible to this token.",
                       [{"field": "alert_id", "message": "not found"}])
    rows = rows[:limit]
    last = rows[-1] if rows else None
    return jsonify({"alert_id": str(aid), "pattern": alert.pattern, "window_start": alert.window_start.isoformat(),
                    "window_end": alert.window_end.isoformat(), "events": [event_view(r) for r in rows],
                    "next_cursor": next_cursor((last.corrected_ts, last.received_at, last.seq, last.event_id))
                    if more and last is not None else None})
