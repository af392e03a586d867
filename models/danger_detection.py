"""Danger-detection job: run the pure rules over the developer's stored events around a batch,
and keep one alert per (developer, pattern, episode).

Each rule runs on its own (activity.danger.detect): an exception in one is
reported and the others still run, so a broken rule costs its own alerts only.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from activity import danger
from activity.danger import DangerThresholds, Detection, severity_rank
from models.aggregation import lock_developer
from models.alerts import alert_document
from models.event_reader import debug_related_events, developer_events, merge_unique
from models.tables import Alert, Batch

log = logging.getLogger("devpulse.danger")

# How far around a batch the rules look: longer than any no-break run or night we grade.
WINDOW = timedelta(hours=24)

# Patterns measured over sliding windows or runs, whose episodes cannot overlap themselves.
OVERLAP_PATTERNS = frozenset({"excessive_errors", "high_ai_dependency", "no_break", "late_night_work"})


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(details, default=str))


def store_detections(
    session: Session, developer_id: str, detections: list[Detection], *, batch_id: uuid.UUID, correlation_id: str,
    now: datetime, freshness: timedelta,
) -> tuple[int, list[Alert]]:
    """Upsert alerts by episode. Returns (rows written, alerts to push now).

    Severity only ever rises; an unchanged detection (a replay, a retry) writes nothing. An alert whose
    episode was merged into another one (a backfilled batch closing the gap) is deleted: superseded.
    """
    if not detections:
        return 0, []
    keys = {(d.pattern, d.episode_key) for d in detections}
    lo = min(d.window_start for d in detections)
    hi = max(d.window_end for d in detections)
    candidates = list(session.execute(
        select(Alert).where(
            Alert.developer_id == developer_id,
            Alert.pattern.in_({d.pattern for d in detections}),
            or_(Alert.episode_key.in_({k for _, k in keys}), and_(Alert.window_end >= lo, Alert.window_start <= hi)),
        ).order_by(Alert.detected_at).with_for_update()
    ).scalars())

    def find(d: Detection) -> Alert | None:
        for a in candidates:
            if a.pattern == d.pattern and a.episode_key == d.episode_key:
                return a
        if d.pattern in OVERLAP_PATTERNS:
            # A late event can move an episode's start (and so its key): the same stretch of time
            # is still the same episode, so it updates the alert instead of adding one.
            for a in candidates:
                if a.pattern == d.pattern and a.window_start <= d.window_end and d.window_start <= a.window_end:
                    return a
        return None

    written = 0
    push: list[Alert] = []
    matched: set[uuid.UUID] = set()
    for d in detections:
        stale = now - d.window_end > freshness
        details = _jsonable(d.details)
        alert = find(d)
        if alert is not None:
            matched.add(alert.alert_id)
        if alert is None:
            alert = Alert(
                alert_id=uuid.uuid4(), developer_id=developer_id, pattern=d.pattern, episode_key=d.episode_key,
                severity=d.severity, window_start=d.window_start, window_end=d.window_end, details=details,
                recommendation=d.recommendation, batch_id=batch_id, correlation_id=correlation_id,
                detected_at=now, updated_at=now, status="open", stale=stale, deliveries=[],
            )
            session.add(alert)
            candidates.append(alert)
            matched.add(alert.alert_id)
            written += 1
            if not stale:
                push.append(alert)
            continue
        raised = severity_rank(d.severity) > severity_rank(alert.severity)
        grew = d.window_end > alert.window_end or d.window_start < alert.window_start
        if not (raised or grew):
            continue
        if raised:
            alert.severity = d.severity
            alert.recommendation = d.recommendation
            # A sharper alert is news again, even if the earlier one was acknowledged.
            alert.status = "open"
            alert.acknowledged_at = None
        alert.window_start = min(alert.window_start, d.window_start)
        alert.window_end = max(alert.window_end, d.window_end)
        alert.details = details
        alert.batch_id = batch_id
        alert.correlation_id = correlation_id
        alert.updated_at = now
        alert.stale = stale
        written += 1
        if raised and not stale:
            push.append(alert)
    # Episodes merged by a backfilled batch come back as ONE detection under the earlier key: an alert of
    # such a pattern that no detection claims but that lies in a detected episode is superseded by it.
    for a in candidates:
        if a.alert_id not in matched and a.pattern in OVERLAP_PATTERNS and any(
            d.pattern == a.pattern and a.window_start <= d.window_end and d.window_start <= a.window_end
            for d in detections
        ):
            session.delete(a)
            written += 1
    session.flush()
    return written, push


def detect_for_batch(session: Session, batch: Batch, *, correlation_id: str, thresholds: DangerThresholds,
                     freshness: timedelta) -> dict[str, Any]:
    if batch.first_ts is None or batch.last_ts is None:
        return {"alerts": 0, "notify": []}
    lock_developer(session, "danger", batch.developer_id)
    start, end = batch.first_ts - WINDOW, batch.last_ts + WINDOW
    events = merge_unique(
        developer_events(session, batch.developer_id, since=start, until=end),
        # A debug session may have started long before the window.
        debug_related_events(session, batch.developer_id, before=start),
    )
    detections, errors = danger.detect(events, thresholds)
    for name, error in sorted(errors.items()):
        log.error("danger rule %s failed: %s", name, error)
    now = datetime.now(UTC)
    written, push = store_detections(
        session, batch.developer_id, detections, batch_id=batch.batch_id, correlation_id=correlation_id,
        now=now, freshness=freshness,
    )
    result: dict[str, Any] = {
        "alerts": written,
        "detections": len(detections),
        # Pushed only after commit, by the task: never announce what might roll back.
        "notify": [alert_document(a) for a in push],
    }
    if errors:
        result["error"] = "; ".join(f"rule {k} failed: {v}" for k, v in sorted(errors.items()))
    return result
