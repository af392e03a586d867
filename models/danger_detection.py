"""Danger-detection job: run the pure rules over the developer's stored events around a batch,
and keep one alert per (developer, pattern, episode).

Each rule runs on its own (activity.danger.detect): an exception in one is
reported and the others still run, so a broken rule costs its own alerts only.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from activity import danger
from activity.danger import DangerThresholds, Detection, severity_rank
from activity.sessions import still_running
from core.breakers import is_transient_error
from core.settings import Settings
from models.aggregation import lock_developer
from models.alert_notifications import record_notification
from models.alert_stream import mark_announced
from models.alerts import alert_document
from models.batch_lifecycle import audit
from models.coalescing import covered_by, mark_covered, merge_spans, waiting_batches
from models.danger_reads import activity_runs, late_night, no_break_runs, offsets_between
from models.event_reader import debug_marks, developer_events
from models.sliding_windows import sliding_detections
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
    scope: tuple[datetime, datetime] | None = None, scopes: Mapping[str, tuple[datetime, datetime]] | None = None,
    is_replay: bool = False,
) -> tuple[int, list[Alert]]:
    """Make the developer's alerts reflect `detections`, the rules' verdict over `scope`. Returns
    (rows written, alerts to push now).

    Alerts are derived data: an episode's alert takes the detection's figures, window, recommendation and
    severity (down as well as up); each change bumps its version. An alert lying inside `scope` that no
    detection claims any more (its episode no longer meets the threshold, or it was merged into another by a
    backfilled batch) is withdrawn: kept with status `withdrawn`, audited, never deleted. Only new alerts and
    escalations are pushed; `announce=False` (a background recompute) stores every change stale, pushes none.
    `scopes` gives each pattern its own scope instead (the reach of the read that pattern's rule ran on).
    """
    if scope is not None:
        scopes = {pattern: scope for pattern in danger.RULES}
    keys = {(d.pattern, d.episode_key) for d in detections}
    bounds = [(d.window_start, d.window_end) for d in detections] + list((scopes or {}).values())
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
                mark_announced(alert)
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
            mark_announced(alert)
            push.append(alert)
    if scopes:
        for a in candidates:
            reach = scopes.get(a.pattern)
            if (reach is None or a.alert_id in matched or a.status == "withdrawn" or a.window_start < reach[0]
                    or a.window_end > reach[1]):
                continue
            merged_into = next((m for m in candidates if m.alert_id in matched and m.pattern == a.pattern
                                and m.window_start <= a.window_end and a.window_start <= m.window_end), None)
            a.status = "withdrawn"
            a.version += 1
            a.updated_at = now
            reason = "merged" if merged_into is not None else "below_threshold"
            audit(session, "alert_withdrawn", batch_id=batch_id, correlation_id=correlation_id, is_replay=is_replay,
                  alert_id=str(a.alert_id), developer_id=developer_id, pattern=a.pattern, reason=reason,
                  merged_into=str(merged_into.alert_id) if merged_into is not None else None, version=a.version)
            written += 1
    session.flush()
    return written, push


def detect_for_batch(session: Session, batch: Batch, *, correlation_id: str, thresholds: DangerThresholds,
                     freshness: timedelta, timezone: str | None = None, is_replay: bool = False,
                     max_notified_per_hour: int = Settings.alert_notify_max_per_hour) -> dict[str, Any]:
    """Re-derive the alerts around this batch, and around the developer's other batches waiting for detection
    (one run covers them: see models/coalescing.py). New alerts and escalations are announced by one notification
    record written in this same transaction (models/alert_notifications.py); "notify" holds its id."""
    if batch.first_ts is None or batch.last_ts is None:
        return {"alerts": 0, "notify": []}
    lock_developer(session, "danger", batch.developer_id)
    if not is_replay and (by := covered_by(session, batch, JOB)) is not None:
        return {"alerts": 0, "notify": [], "covered_by": str(by)}
    others = [] if is_replay else waiting_batches(session, batch, JOB)
    written, found = 0, 0
    push: list[Alert] = []
    errors: dict[str, str] = {}
    for first, last in merge_spans([(b.first_ts, b.last_ts) for b in (batch, *others)
                                    if b.first_ts is not None and b.last_ts is not None]):
        detections, scopes = detect_span(session, batch.developer_id, first, last, thresholds, timezone, errors)
        detections = with_stored_partners(session, batch.developer_id, detections, scopes)
        stored, pushed = store_detections(
            session, batch.developer_id, detections, batch_id=batch.batch_id, correlation_id=correlation_id,
            now=datetime.now(UTC), freshness=freshness, scopes=scopes, is_replay=is_replay,
        )
        written, found, push = written + stored, found + len(detections), push + pushed
    for name, error in sorted(errors.items()):
        log.error("danger rule %s failed: %s", name, error,
                  extra={"batch_id": str(batch.batch_id), "developer_id": batch.developer_id,
                         "correlation_id": correlation_id, "is_replay": is_replay, "step": "detect_danger",
                         "rule": name, "event_count": batch.accepted,
                         "window": [batch.first_ts.isoformat(), batch.last_ts.isoformat()]})
    mark_covered(session, others, JOB, by=batch)
    # One alert may be pushed by two spans of the run: announced once, as it stands now.
    announced = {a.alert_id: a for a in push}
    notification = record_notification(session, batch.developer_id, batch.batch_id, correlation_id,
                                       [alert_document(a) for a in announced.values()],
                                       max_per_hour=max_notified_per_hour)
    result: dict[str, Any] = {
        "alerts": written,
        "detections": found,
        # Delivered from the record once this transaction commits: never announce what might roll back.
        "notify": [notification] if notification is not None else [],
    }
    if others:
        result["covered"] = len(others)
    if errors:
        result["error"] = "; ".join(f"rule {k} failed: {v}" for k, v in sorted(errors.items()))
        result["failed_rules"] = dict(sorted(errors.items()))  # for the job_failed record (tasks/pipeline.py)
    return result


def detect_span(session: Session, developer_id: str, first: datetime, last: datetime, th: DangerThresholds,
                timezone: str | None, errors: dict[str, str]
                ) -> tuple[list[Detection], dict[str, tuple[datetime, datetime]]]:
    """Every rule's detections that events in [first, last] can change, each rule reading only as far as its
    episodes reach (never more than WINDOW around), and per pattern the scope that was re-derived in full.

    Costs follow the batch, not the history: the sliding-window rules read their own event types within one
    window length (further only while an episode reaches the edge), debug sessions back to the earliest one
    still running, and the two rules over long stretches (no_break, late-night) are measured in SQL.
    """
    cap = (first - WINDOW, last + WINDOW)
    found: list[Detection] = []
    scopes: dict[str, tuple[datetime, datetime]] = {}

    def isolated(pattern: str, run: Callable[[], list[Detection]]) -> None:
        # One broken rule must not cost the others: each runs in a savepoint (a failed query of one rule leaves
        # the transaction usable). A lost database or the task's time limit is not the rule's fault: re-raised.
        try:
            with session.begin_nested():
                found.extend(run())
        except Exception as exc:
            if is_transient_error(exc) or type(exc).__name__ == "SoftTimeLimitExceeded":
                raise
            errors[pattern] = f"{type(exc).__name__}: {exc}"[:500]

    for pattern in ("excessive_errors", "high_ai_dependency"):
        isolated(pattern, partial(_sliding, session, developer_id, pattern, first, last, th, cap, scopes))
    isolated("extended_debugging", lambda: _debugging(session, developer_id, first, last, th, scopes))

    def no_break() -> list[Detection]:
        runs, span = no_break_runs(session, developer_id, first=first, last=last, lo=cap[0], hi=cap[1], th=th,
                                   job=JOB)
        scopes["no_break"] = span
        return runs
    isolated("no_break", no_break)
    isolated("late_night_work", lambda: _late_night(session, developer_id, first, last, th, timezone, scopes))
    return found, scopes


def _sliding(session: Session, developer_id: str, pattern: str, first: datetime, last: datetime,
             th: DangerThresholds, cap: tuple[datetime, datetime],
             scopes: dict[str, tuple[datetime, datetime]]) -> list[Detection]:
    # A trailing window that holds an event of [first, last] lies within one window length of it. An episode
    # whose first (last) event is within a window length of the read's edge may go on beyond it: read further.
    reach = danger.sliding_reach(pattern, th)
    lo, hi = max(cap[0], first - reach), min(cap[1], last + reach)
    # An episode that reaches the edge usually is one already stored: start from its extent, not step by step.
    known = session.execute(select(func.min(Alert.window_start), func.max(Alert.window_end)).where(
        Alert.developer_id == developer_id, Alert.pattern == pattern, Alert.status != "withdrawn",
        Alert.window_end >= lo, Alert.window_start <= hi)).one()
    if known[0] is not None:
        lo, hi = max(cap[0], min(lo, known[0] - reach)), min(cap[1], max(hi, known[1] + reach))
    step = 4 * reach
    while True:
        # Measured inside PostgreSQL: only a row per episode leaves it, however many events the windows hold.
        detections = sliding_detections(session, developer_id, pattern, lo, hi, th, job=JOB)
        earlier = lo > cap[0] and any(d.window_start < lo + reach for d in detections)
        later = hi < cap[1] and any(d.window_end > hi - reach for d in detections)
        if not earlier and not later:
            break
        lo = max(cap[0], lo - step) if earlier else lo
        hi = min(cap[1], hi + step) if later else hi
        step *= 2
    # Windows ending within one length of the read's start were seen cut short: no verdict there.
    scopes[pattern] = (lo + reach if lo > cap[0] else lo, hi)
    return detections


def _debugging(session: Session, developer_id: str, first: datetime, last: datetime, th: DangerThresholds,
               scopes: dict[str, tuple[datetime, datetime]]) -> list[Detection]:
    # The same reach as aggregation's (models/aggregation.py): sessions still running before the events, and
    # those starting among them; each lasts at most max_debug_session_hours.
    idle, max_debug = timedelta(seconds=th.idle_timeout_seconds), timedelta(hours=th.max_debug_session_hours)
    settled = first - idle
    starts, stops = debug_marks(session, developer_id, settled - max_debug, last, job=JOB)
    running = still_running(starts, stops, settled)
    involved = bool(running) or any(ts >= settled for ts in starts.values())
    lo, hi = min([settled, *running]), last + idle + (max_debug if involved else timedelta(0))
    scopes["extended_debugging"] = (lo, hi)
    if not involved:
        return []
    # The debug events themselves, and where the developer went idle as runs measured in SQL: no other event
    # needs to leave the database.
    events = developer_events(session, developer_id, since=lo, until=hi, job=JOB, types=_DEBUG_TYPES)
    runs = activity_runs(session, developer_id, lo, hi, gap=idle, job=JOB)
    return danger.detect_extended_debugging(events, th, runs=runs)


_DEBUG_TYPES = frozenset({"debug.start", "debug.stop"})


def _late_night(session: Session, developer_id: str, first: datetime, last: datetime, th: DangerThresholds,
                timezone: str | None, scopes: dict[str, tuple[datetime, datetime]]) -> list[Detection]:
    # Only the nights a gap involving these events can reach (within the idle timeout) can change.
    idle = timedelta(seconds=th.idle_timeout_seconds)
    if timezone:
        zone = ZoneInfo(timezone)
        probes = [first - timedelta(days=1), first, last, last + timedelta(days=1)]
        minutes = [int((zone.utcoffset(p.replace(tzinfo=None)) or timedelta(0)) // timedelta(minutes=1))
                   for p in probes]
        offsets: tuple[int, int] | None = (min(minutes), max(minutes))
    else:
        offsets = offsets_between(session, developer_id, first - idle, last + idle)
    if offsets is None:
        return []
    local_lo = (first - idle).replace(tzinfo=None) + timedelta(minutes=offsets[0])
    local_hi = (last + idle).replace(tzinfo=None) + timedelta(minutes=offsets[1])
    nights = danger.nights_touching(local_lo, local_hi, th)
    if nights and not timezone:
        # The night's events may carry other offsets than these (a developer crossing zones): every offset
        # found where the night could lie in some zone (UTC-14 to UTC+14) widens its read.
        start, end = danger.night_bounds(nights[0], th)[0], danger.night_bounds(nights[-1], th)[1]
        wide = offsets_between(session, developer_id, start.replace(tzinfo=UTC) - _ZONES - idle,
                               end.replace(tzinfo=UTC) + _ZONES + idle)
        offsets = offsets if wide is None else (min(offsets[0], wide[0]), max(offsets[1], wide[1]))
    detections, span = late_night(session, developer_id, nights, th=th, zone=timezone, offsets=offsets, job=JOB)
    if span is not None:
        scopes["late_night_work"] = span
    return detections


# The widest UTC offsets a client's clock can carry.
_ZONES = timedelta(hours=14)


def with_stored_partners(session: Session, developer_id: str, detections: list[Detection],
                         scopes: Mapping[str, tuple[datetime, datetime]]) -> list[Detection]:
    """The detections escalated and prioritized together with the stored alerts they overlap that this run did
    not re-derive (outside their pattern's scope): a high episode is critical when it overlaps a high episode
    of another pattern, wherever that one was measured. Those alerts come back too, restated with their
    escalation recomputed (up or down) against everything that overlaps them, so storing them changes only
    what escalation changes."""
    if not detections:
        return []

    def stored(lo: datetime, hi: datetime, skip: set[uuid.UUID]) -> list[Alert]:
        found = []
        for a in session.execute(select(Alert).where(
                Alert.developer_id == developer_id, Alert.status != "withdrawn", Alert.window_end >= lo,
                Alert.window_start <= hi)).scalars():
            reach = scopes.get(a.pattern)
            if a.alert_id in skip or (reach is not None and reach[0] <= a.window_start
                                      and a.window_end <= reach[1]):
                continue  # already taken, or re-derived by this run
            if any(d.pattern == a.pattern and (d.episode_key == a.episode_key or (
                    a.pattern in OVERLAP_PATTERNS and d.window_start <= a.window_end
                    and a.window_start <= d.window_end)) for d in detections):
                continue  # the same episode, measured again now
            found.append(a)
        return found

    def restate(a: Alert) -> Detection:
        return danger.restated(a.pattern, a.severity, (a.window_start, a.window_end), a.episode_key, a.details)

    partners = stored(min(d.window_start for d in detections), max(d.window_end for d in detections), set())
    # What overlaps the partners decides their own escalation: taken into account, not stored.
    context = stored(min(a.window_start for a in partners), max(a.window_end for a in partners),
                     {a.alert_id for a in partners}) if partners else []
    mine = len(detections) + len(partners)
    escalated = danger.escalate_critical([*detections, *map(restate, partners), *map(restate, context)])[:mine]
    return danger.prioritize(escalated)


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
