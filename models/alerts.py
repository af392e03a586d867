"""Developer alerts: one row per (developer, pattern, episode), listed by priority."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from models.tables import Alert


def alert_channel(developer_id: str) -> str:
    """The Redis pub/sub channel on which a developer's new alerts are pushed."""
    return f"devpulse:alerts:{developer_id}"


_SEVERITY_RANK = case({"low": 0, "medium": 1, "high": 2, "critical": 3}, value=Alert.severity)


def alert_document(alert: Alert) -> dict[str, Any]:
    """The alert as published: the same document in the API, the SSE stream and the webhook body.

    Kept here rather than in app/ because the workers publish it too (pub/sub, webhook), and one
    definition keeps the three from drifting apart.
    """
    return {
        "alert_id": str(alert.alert_id),
        "developer_id": alert.developer_id,
        "pattern": alert.pattern,
        "severity": alert.severity,
        "window_start": alert.window_start.isoformat(),
        "window_end": alert.window_end.isoformat(),
        "details": alert.details,
        "recommendation": alert.recommendation,
        "batch_id": str(alert.batch_id) if alert.batch_id else None,
        "correlation_id": alert.correlation_id,
        "detected_at": alert.detected_at.isoformat(),
        "updated_at": alert.updated_at.isoformat() if alert.updated_at else None,
        "status": alert.status,
        "acknowledged_at": alert.acknowledged_at.isoformat() if alert.acknowledged_at else None,
        "stale": alert.stale,
        "version": alert.version,
        "deliveries": alert.deliveries,
    }


def list_alerts(session: Session, developer_id: str, *, status: str | None = None,
                since: datetime | None = None, limit: int = 200) -> list[Alert]:
    """Highest severity first, then newest."""
    stmt = select(Alert).where(Alert.developer_id == developer_id)
    # Withdrawn alerts (episodes the stored events no longer support) are listed only when asked for.
    stmt = stmt.where(Alert.status == status) if status is not None else stmt.where(Alert.status != "withdrawn")
    if since is not None:
        stmt = stmt.where(Alert.updated_at >= since)
    stmt = stmt.order_by(_SEVERITY_RANK.desc(), Alert.window_end.desc(), Alert.detected_at.desc(), Alert.pattern)
    return list(session.execute(stmt.limit(limit)).scalars())


def acknowledge(session: Session, developer_id: str, alert_id: uuid.UUID, at: datetime) -> Alert | None:
    alert = session.execute(
        select(Alert).where(Alert.alert_id == alert_id, Alert.developer_id == developer_id).with_for_update()
    ).scalar_one_or_none()
    if alert is not None and alert.status != "acknowledged":
        alert.status = "acknowledged"
        alert.acknowledged_at = at
    return alert
