"""Alerts as the detection job stores them, for the alerts API and the delivery tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from activity.danger import Detection
from models.alerts import alert_document
from models.danger_detection import store_detections
from models.tables import Alert

FRESH = timedelta(hours=24)


def seed(db, developer_id: str, pattern: str, severity: str, window_end: datetime, *,
         minutes: float = 10, key: str | None = None, detected_at: datetime | None = None) -> dict[str, Any]:
    """Store one alert the way the detection job does; returns its view."""
    start = window_end - timedelta(minutes=minutes)
    d = Detection(pattern, severity, start, window_end, key or start.isoformat(), {"measured": 1},
                  f"Take a break ({pattern}, {severity}).")
    with db.transaction() as s:
        written, _ = store_detections(s, developer_id, [d], batch_id=uuid.uuid4(), correlation_id="corr-seed",
                                      now=detected_at or window_end + timedelta(seconds=5), freshness=FRESH)
        assert written == 1
        alert = s.scalars(select(Alert).where(Alert.developer_id == developer_id, Alert.pattern == pattern,
                                              Alert.episode_key == d.episode_key)).one()
        return alert_document(alert)


def notification(db, developer_id: str, documents: list[dict[str, Any]]) -> int:
    """The notification record announcing `documents`, as the detection job writes it (on a stored batch)."""
    from models.alert_notifications import record_notification
    from tests.support.factories import batch, event
    from tests.support.pipeline import persist_body

    stored = persist_body(db, batch([event("file.save")], developer_id=developer_id))
    with db.transaction() as s:
        record = record_notification(s, developer_id, stored.batch.batch_id, "corr-seed", documents,
                                     max_per_hour=1000)
    assert record is not None
    return record


def base_time() -> datetime:
    return datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
