"""Jinja filters of the dashboard: metric values for people, instants in a zone (or the viewer's, by script)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

from app.pages import bp


@bp.app_template_filter("metric")
def metric(value: int | float | None, name: str) -> str:
    if value is None:
        return "\u2013"
    if name.endswith("_seconds"):
        minutes = round(value / 60)
        return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
    if name == "ai_share":
        return f"{value * 100:.0f} %"
    return f"{value:,}"


@bp.app_template_filter("localtime")
def localtime(value: datetime | str | None, zone: str | None = None) -> Markup | str:
    """In `zone` when given; else a <time> element the page's script rewrites into the viewer's own zone."""
    if value is None:
        return "\u2013"
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if zone:
        return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")
    iso = moment.isoformat()
    return Markup('<time datetime="{}">{}</time>').format(iso, moment.strftime("%Y-%m-%d %H:%M:%S UTC"))


@bp.app_template_filter("measured")
def measured(details: dict[str, Any] | None) -> Markup:
    items = [f"{escape(k)}: {escape(v)}" for k, v in (details or {}).items() if not isinstance(v, (dict, list))]
    return Markup(", ".join(items))
