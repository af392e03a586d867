"""The developer view: today and this week in the developer's zone, an hour chart of a chosen day, 30 days by
day, the alerts (acknowledge; new ones arrive over the alert stream) and the settings form.

Every number comes from models.metrics_read.metric_buckets, models.alerts and the settings API's functions:
the very reads the JSON API serves, never a second copy of a query.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from app.developer_settings_api import apply_settings, load_settings_update, settings_view
from app.errors import ApiError
from app.pages import bp
from app.pages.session_auth import forbidden, login_required
from app.storage import storage
from models.alerts import acknowledge, alert_document, list_alerts
from models.developer_settings import preferences
from models.metrics_read import METRIC_NAMES, Bucket, metric_buckets
from models.pipeline_health import known_developers

# The columns of the hour and day tables (and the summary), in the API's field names.
TABLE_METRICS = ("active_seconds", "debug_seconds", "edits", "lines_added", "lines_deleted", "saves", "builds",
                 "build_failures", "tests_passed", "tests_failed", "error_events", "ai_share")
LABELS = {"active_seconds": "Active time", "debug_seconds": "Debug time", "edits": "Edits",
          "lines_added": "Lines added", "lines_deleted": "Lines deleted", "saves": "Saves", "builds": "Builds",
          "build_failures": "Build failures", "tests_passed": "Tests passed", "tests_failed": "Tests failed",
          "error_events": "Error events", "ai_share": "AI share"}
EMPTY: dict[str, int | float | None] = {name: (None if name == "ai_share" else 0) for name in METRIC_NAMES}


@dataclass(frozen=True)
class Row:
    """One bar of a chart and the same numbers as one row of its data table."""

    label: str
    bucket_start: str  # UTC ISO instant, as the API's hour buckets name it
    values: dict[str, int | float | None]


def chosen_developer() -> str | ResponseReturnValue | None:
    """The developer the page shows: the token's own; an admin's `?developer=` (None: the admin must pick)."""
    requested = request.values.get("developer") or None
    if g.principal.is_admin:
        return requested
    if requested not in (None, g.principal.developer_id):
        return forbidden(f"developer: this token belongs to '{g.principal.developer_id}', not '{requested}'.")
    return str(g.principal.developer_id)


def _series(buckets: list[Bucket], starts: list[datetime], label: Any) -> list[Row]:
    found = {b.bucket_start: b.values for b in buckets}
    return [Row(label(start), start.astimezone(UTC).isoformat(), found.get(start, EMPTY)) for start in starts]


def _day_param(today: date) -> date:
    raw = request.args.get("day") or ""
    try:
        return date.fromisoformat(raw) if raw else today
    except ValueError:
        flash(f"day: '{raw[:20]}' is not a date (YYYY-MM-DD); showing today", "error")
        return today


def developer_page_data(s: Session, developer_id: str, day_param: Any) -> dict[str, Any]:
    prefs = preferences(s, developer_id)
    zone = ZoneInfo(prefs.timezone)
    today = datetime.now(zone).date()
    day = day_param(today)

    def midnight(d: date) -> datetime:
        return datetime.combine(d, time(), zone).astimezone(UTC)

    monday = today - timedelta(days=today.weekday())
    tz = prefs.timezone
    today_b = metric_buckets(s, developer_id, "day", timezone=tz, start=midnight(today),
                             end=midnight(today + timedelta(days=1)))
    week_b = metric_buckets(s, developer_id, "week", timezone=tz, start=midnight(monday),
                            end=midnight(monday + timedelta(days=7)))
    day_start, day_end = midnight(day), midnight(day + timedelta(days=1))
    hour_b = metric_buckets(s, developer_id, "hour", timezone=tz, start=day_start, end=day_end)
    first = today - timedelta(days=29)
    days_b = metric_buckets(s, developer_id, "day", timezone=tz, start=midnight(first),
                            end=midnight(today + timedelta(days=1)))
    # The API's hour buckets are UTC hours: those starting within the local day (a +05:30 zone's day holds the
    # UTC hours from 19:00 to 18:00, shown as 00:30 to 23:30 local).
    first_hour = day_start + (datetime.min.replace(tzinfo=UTC) - day_start) % timedelta(hours=1)
    hours = [first_hour + timedelta(hours=i) for i in range(math.ceil((day_end - first_hour) / timedelta(hours=1)))]
    return {
        "developer_id": developer_id, "timezone": tz, "today": today, "day": day,
        "summary_today": today_b[0].values if today_b else EMPTY,
        "summary_week": week_b[0].values if week_b else EMPTY,
        "hours": _series(hour_b, hours, lambda t: t.astimezone(zone).strftime("%H:%M")),
        "days": _series(days_b, [midnight(first + timedelta(days=i)) for i in range(30)],
                        lambda t: t.astimezone(zone).strftime("%a %d %b")),
        "alerts": [alert_document(a) for a in list_alerts(s, developer_id, limit=50)],
        "settings": settings_view(s, developer_id),
        "has_events": bool(days_b) or bool(hour_b),
    }


@bp.get("/dashboard")
@login_required
def dashboard() -> ResponseReturnValue:
    developer_id = chosen_developer()
    if developer_id is None:
        return render_template("pick_developer.html", developers=storage().transaction(known_developers))
    if not isinstance(developer_id, str):
        return developer_id
    data = storage().transaction(lambda s: developer_page_data(s, developer_id, _day_param))
    return render_template("developer.html", labels=LABELS, metrics=TABLE_METRICS, **data)


def _back(developer_id: str) -> ResponseReturnValue:
    return redirect(url_for("pages.dashboard", developer=developer_id if g.principal.is_admin else None), code=303)


@bp.post("/dashboard/alerts/<alert_id>/ack")
@login_required
def ack(alert_id: str) -> ResponseReturnValue:
    developer_id = chosen_developer()
    if not isinstance(developer_id, str):
        return developer_id or forbidden("developer: choose the developer whose alert this is.")
    try:
        aid = uuid.UUID(alert_id)
    except ValueError:
        return forbidden("alert_id: not a UUID.")
    found = storage().transaction(lambda s: acknowledge(s, developer_id, aid, datetime.now(UTC)) is not None)
    flash("Alert acknowledged." if found else f"alert_id: no alert {aid} for {developer_id}.",
          "info" if found else "error")
    return _back(developer_id)


@bp.post("/dashboard/settings")
@login_required
def save_settings() -> ResponseReturnValue:
    developer_id = chosen_developer()
    if not isinstance(developer_id, str):
        return developer_id or forbidden("developer: choose the developer whose settings these are.")
    body: dict[str, Any] = {"timezone": request.form.get("timezone", "").strip()}
    raw_idle = request.form.get("idle_timeout_seconds", "").strip()
    try:
        body["idle_timeout_seconds"] = int(raw_idle)
    except ValueError:
        flash(f"idle_timeout_seconds: '{raw_idle[:20]}' is not a whole number of seconds", "error")
        return _back(developer_id)
    try:
        update = load_settings_update(body)
    except ApiError as exc:
        flash(exc.message, "error")
        return _back(developer_id)
    view = storage().transaction(lambda s: apply_settings(s, developer_id, update))
    flash("Settings saved." + (" Recomputing your history in the background." if view["recompute"]["pending"]
                               else ""), "info")
    return _back(developer_id)
