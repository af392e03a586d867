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
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from activity import danger
from activity.danger import DangerThresholds, Detection, severity_rank
from models.aggregation import lock_developer
from models.alerts import alert_document
from models.batch_lifecycle import audit
from models.coalescing import covered_by, mark_covered, merge_spans, waiting_batches
from models.event_reader import developer_events
from models.tables import Alert, Batch

log = logging.getLogger("devpulse.danger")

# How far around a batch the rules look: longer than any no-break run or night we grade.
WINDOW = timedelta(hours=24)

# Patterns measured over sliding windows or runs, whose episodes cannot overlap themselves.
JOB = "detect_danger"

OVERLAP_PATTERNS = frozenset({"excessive_errors", "high_ai_dependency", "no_break", "late_night_work"})


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(details, default=str))


def store_detections(
    session: Session, developer_id: str, detections: list[Detection], *, batch_id: uuid.UUID | None,
    correlation_id: str, now: datetime, freshness: timedelta, announce: bool = True,
    scope: tuple[datetime, datetime] | None = None,
) -> tuple[int, list[Alert]]:
    """Make the developer's alerts reflect `detections`, the rules' verdict over `scope`. Returns
    (rows written, alerts to push now).

    Alerts are derived data: an episode's alert takes the detection's figures, window, recommendation and
    severity (down as well as up); each change bumps its version. An alert lying inside `scope` that no
    detection claims any more (its episode no longer meets the threshold, or it was merged into another by a
    backfilled batch) is withdrawn: kept with status `withdrawn`, audited, never deleted. Only new alerts and
    escalations are pushed; `announce=False` (a background recompute) stores every change stale, pushes none.
    """
    keys = {(d.pattern, d.episode_key) for d in detections}
    bounds = [(d.window_start, d.window_end) for d in detections] + ([scope] if scope else [])
    if not bounds:
        return 0, []
    lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
    candidates = list(session.execute(
        select(Alert).where(
            Alert.developer_id == developer_id,
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
                if (a.pattern == d.pattern and a.status != "withdrawn" and a.window_start <= d.window_end
                        and d.window_start <= a.window_end):
                    return a
        return None

    written = 0
    push: list[Alert] = []
    matched: set[uuid.UUID] = set()
    for d in detections:
        stale = not announce or now - d.window_end > freshness
        details = _jsonable(d.details)
        alert = find(d)
        if alert is None:
            alert = Alert(
                alert_id=uuid.uuid4(), developer_id=developer_id, pattern=d.pattern, episode_key=d.episode_key,
                severity=d.severity, window_start=d.window_start, window_end=d.window_end, details=details,
                recommendation=d.recommendation, batch_id=batch_id, correlation_id=correlation_id,
                detected_at=now, updated_at=now, status="open", stale=stale, deliveries=[], version=1,
            )
            session.add(alert)
            candidates.append(alert)
            matched.add(alert.alert_id)
            written += 1
            if not stale:
                push.append(alert)
            continue
        matched.add(alert.alert_id)
        figures = (d.severity, d.window_start, d.window_end, details, d.recommendation, d.episode_key)
        if alert.status != "withdrawn" and figures == (alert.severity, alert.window_start, alert.window_end,
                                                        alert.details, alert.recommendation, alert.episode_key):
            continue  # a replay or a retry: nothing changed
        news = alert.status == "withdrawn" or severity_rank(d.severity) > severity_rank(alert.severity)
        (alert.severity, alert.window_start, alert.window_end, alert.details, alert.recommendation,
         alert.episode_key) = figures
        if news:
            # A sharper (or returning) alert is news again, even if the earlier one was acknowledged.
            alert.status = "open"
            alert.acknowledged_at = None
        if batch_id is not None:
            alert.batch_id = batch_id
        alert.correlation_id = correlation_id
        alert.updated_at = now
        alert.stale = stale
        alert.version += 1
        written += 1
        if news and not stale:
            push.append(alert)
    if scope is not None:
        for a in candidates:
            if (a.alert_id in matched or a.status == "withdrawn" or a.window_start < scope[0]
                    or a.window_end > scope[1]):
                continue
            merged_into = next((m for m in candidates if m.alert_id in matched and m.pattern == a.pattern
                                and m.window_start <= a.window_end and a.window_start <= m.window_end), None)
            a.status = "withdrawn"
            a.version += 1
            a.updated_at = now
            reason = "merged" if merged_into is not None else "below_threshold"
            audit(session, "alert_withdrawn", batch_id=batch_id, correlation_id=correlation_id,
                  alert_id=str(a.alert_id), developer_id=developer_id, pattern=a.pattern, reason=reason,
                  merged_into=str(merged_into.alert_id) if merged_into is not None else None, version=a.version)
            written += 1
    session.flush()
    return written, push


def detect_for_batch(session: Session, batch: Batch, *, correlation_id: str, thresholds: DangerThresholds,
                     freshness: timedelta, timezone: str | None = None, is_replay: bool = False) -> dict[str, Any]:
    """Re-derive the alerts around this batch, and around the developer's other batches waiting for detection
    (one run covers them: see models/coalescing.py)."""
    if batch.first_ts is None or batch.last_ts is None:
        return {"alerts": 0, "notify": []}
    lock_developer(session, "danger", batch.developer_id)
    if not is_replay and (by := covered_by(session, batch, JOB)) is not None:
        return {"alerts": 0, "notify": [], "covered_by": str(by)}
    others = [] if is_replay else waiting_batches(session, batch, JOB)
    windows = merge_spans([(b.first_ts - WINDOW, b.last_ts + WINDOW) for b in (batch, *others)
                           if b.first_ts is not None and b.last_ts is not None])
    # No read before the window: a debug session that started before it ended at most max_debug_session_hours
    # later (activity/sessions.py), long before the batch's events, which therefore cannot change it.
    zone = ZoneInfo(timezone) if timezone else None
    written, found = 0, 0
    push: list[Alert] = []
    errors: dict[str, str] = {}
    for start, end in windows:
        events = developer_events(session, batch.developer_id, since=start, until=end, job=JOB,
                                  payload_types=danger.PAYLOAD_TYPES)
        detections, failed = danger.detect(events, thresholds, zone)
        errors.update(failed)
        stored, pushed = store_detections(
            session, batch.developer_id, detections, batch_id=batch.batch_id, correlation_id=correlation_id,
            now=datetime.now(UTC), freshness=freshness, scope=(start, end),
        )
        written, found, push = written + stored, found + len(detections), push + pushed
    for name, error in sorted(errors.items()):
        log.error("danger rule %s failed: %s", name, error)
    mark_covered(session, others, JOB, by=batch)
    result: dict[str, Any] = {
        "alerts": written,
        "detections": found,
        # Pushed only after commit, by the task: never announce what might roll back.
        "notify": [alert_document(a) for a in push],
    }
    if others:
        result["covered"] = len(others)
    if errors:
        result["error"] = "; ".join(f"rule {k} failed: {v}" for k, v in sorted(errors.items()))
    return result


def detect_range(session: Session, developer_id: str, start: datetime, end: datetime, *,
                 thresholds: DangerThresholds, timezone: str | None = None) -> int:
    """Re-derive the alerts of episodes that touch [start, end) (a background recompute): stored stale."""
    events = developer_events(session, developer_id, since=start - WINDOW, until=end + WINDOW,
                              job="detect_danger", payload_types=danger.PAYLOAD_TYPES)
    detections, errors = danger.detect(events, thresholds, ZoneInfo(timezone) if timezone else None)
    for name, error in sorted(errors.items()):
        log.error("danger rule %s failed during a recompute: %s", name, error)
    touching = [d for d in detections if d.window_start < end and d.window_end >= start]
    written, _ = store_detections(session, developer_id, touching, batch_id=None, correlation_id="recompute",
                                  now=datetime.now(UTC), freshness=timedelta(0), announce=False, scope=(start, end))
    return written
