"""Danger patterns: pure rules that flag risky work habits in ONE developer's events.

Rules accept events in any order, with duplicates, and return `Detection`s. The
`episode_key` names the episode so the caller keeps one alert per (developer,
pattern, episode) and, when a later batch extends it, updates that alert:
- excessive_errors / high_ai_dependency: ISO UTC time of the episode's first
  event. Windows are trailing (they end at an event), so strictly later events
  never change an existing window: qualifying windows only accumulate and the
  episode start, hence the key, is stable.
- extended_debugging: the payload's debug_session_id.
- no_break: ISO UTC time of the run's first event; a growing run keeps it. A
  backfilled event that closes the gap between two runs merges them under the
  EARLIER run's key; the later key disappears and its alert is superseded.
- late_night_work: the local date of the night (the morning's date if the
  night window wraps past midnight).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from itertools import pairwise
from typing import Any

# Re-exported (`X as X`): the rules' callers import these from here.
from activity.detections import _DEFAULT, make_detection
from activity.detections import SEVERITY_ORDER as SEVERITY_ORDER
from activity.detections import DangerThresholds as DangerThresholds
from activity.detections import Detection as Detection
from activity.detections import escalate_critical as escalate_critical
from activity.detections import prioritize as prioritize
from activity.detections import restated as restated
from activity.detections import severity_rank as severity_rank
from activity.episodes import grade, num, sliding_episodes
from activity.events import NormalizedEvent, prepare
from activity.metrics import is_error_event
from activity.sessions import debug_sessions

Events = Iterable[NormalizedEvent]
_AI_TYPES = frozenset({"ai.suggestion_accepted", "ai.chat_insert"})
# The event types whose payload any rule reads (1.0's ai.completion becomes an AI type only by its payload);
# of every other event the rules need only the time and the type, so readers may leave its payload out.
PAYLOAD_TYPES = frozenset({"build.result", "test.result", "terminal.command", "diagnostics.snapshot",
                           "debug.start", "debug.stop", "file.edit", "ai.completion", *_AI_TYPES})


def detect_excessive_errors(events: Events, th: DangerThresholds = _DEFAULT) -> list[Detection]:
    """Error events within any window of excessive_errors_window_minutes.

    "Within 15 minutes" means a half-open window [s, s + 15 min): the counted
    errors span strictly less than 15 minutes.
    """
    times = [e.ts for e in prepare(events) if is_error_event(e)]

    def count(lo: int, hi: int) -> float | None:
        return hi - lo if hi - lo >= th.excessive_errors_medium else None

    found = []
    for ep in sliding_episodes(times, timedelta(minutes=th.excessive_errors_window_minutes), count):
        found.append(grade_errors_episode((times[ep.first], times[ep.last]), int(ep.peak),
                                          (times[ep.peak_lo], times[ep.peak_hi - 1]), ep.last - ep.first + 1, th))
    return found


def grade_errors_episode(span: tuple[datetime, datetime], peak: int, peak_window: tuple[datetime, datetime],
                         episode_count: int, th: DangerThresholds = _DEFAULT) -> Detection:
    """The verdict on one excessive-errors episode (first to last error item `span`): `peak` errors in the
    peak window (its first and last error item), `episode_count` errors in the whole episode. Shared by the
    pure rule and its SQL measure (models/sliding_windows.py)."""
    start, end = span
    measured = {
        "peak_error_count": peak,
        "peak_window_start": peak_window[0].isoformat(),
        "peak_window_end": peak_window[1].isoformat(),
        "episode_error_count": episode_count,
    }
    severity = "high" if peak >= th.excessive_errors_high else "medium"
    return make_detection("excessive_errors", severity, (start, end), start.isoformat(), measured, th)


def detect_extended_debugging(events: Events, th: DangerThresholds = _DEFAULT, *,
                              runs: Sequence[tuple[datetime, datetime]] | None = None) -> list[Detection]:
    """One debug session lasting extended_debugging_medium/high_minutes or more.

    `runs`: the developer's activity runs (gap = idle timeout) when `events` hold only the debug events
    (see `activity.sessions.debug_sessions`)."""
    levels = [
        ("high", timedelta(minutes=th.extended_debugging_high_minutes)),
        ("medium", timedelta(minutes=th.extended_debugging_medium_minutes)),
    ]
    found = []
    sessions = debug_sessions(prepare(events), idle=timedelta(seconds=th.idle_timeout_seconds),
                              max_session=timedelta(hours=th.max_debug_session_hours), runs=runs)
    for session in sessions:
        start, end = session.start, session.end
        severity = grade(end - start, levels)
        if severity is None:
            continue
        seconds = (end - start).total_seconds()
        measured = {
            "debug_session_id": session.session_id,
            "duration_minutes": round(seconds / 60, 2),
            "duration_seconds": seconds,
            "still_open": session.still_open,
            "ended_by": session.ended_by,
            "started_at": start.isoformat(),
            "ended_at": end.isoformat(),
        }
        found.append(make_detection("extended_debugging", severity, (start, end), session.session_id, measured, th))
    return found


def detect_high_ai_dependency(events: Events, th: DangerThresholds = _DEFAULT) -> list[Detection]:
    """Share of AI-inserted characters among all added characters per window,
    judged only when the window holds at least ai_min_chars characters."""
    times: list[datetime] = []
    ai_sum, typed_sum = [0], [0]  # prefix sums: any window's totals in O(1)
    for e in prepare(events):
        ai = num(e.payload, "chars_inserted") if e.type in _AI_TYPES else None
        typed = num(e.payload, "chars_typed") if e.type == "file.edit" else None
        ai, typed = max(int(ai or 0), 0), max(int(typed or 0), 0)
        if ai or typed:  # zero-character events would only stretch the extent
            times.append(e.ts)
            ai_sum.append(ai_sum[-1] + ai)
            typed_sum.append(typed_sum[-1] + typed)

    def share(lo: int, hi: int) -> float | None:
        ai = ai_sum[hi] - ai_sum[lo]
        total = ai + typed_sum[hi] - typed_sum[lo]
        if total == 0 or total < th.ai_min_chars:
            return None
        value = ai_share(ai, total - ai)
        return value if value >= th.ai_medium else None

    found = []
    for ep in sliding_episodes(times, timedelta(minutes=th.ai_window_minutes), share):
        ai = ai_sum[ep.peak_hi] - ai_sum[ep.peak_lo]
        typed = typed_sum[ep.peak_hi] - typed_sum[ep.peak_lo]
        found.append(grade_ai_episode((times[ep.first], times[ep.last]), (times[ep.peak_lo], times[ep.peak_hi - 1]),
                                      ai, typed, th))
    return found


def ai_share(ai: int, typed: int) -> float:
    """The AI share of a window's characters, as every path computes it: int / int is correctly rounded
    (7000/10000 == 0.70 exactly), so the SQL measure must reproduce this very float."""
    return ai / (ai + typed)


def grade_ai_episode(span: tuple[datetime, datetime], peak_window: tuple[datetime, datetime], ai: int, typed: int,
                     th: DangerThresholds = _DEFAULT) -> Detection:
    """The verdict on one high-AI-dependency episode (first to last item `span`): its peak window (first and
    last item) held `ai` AI-inserted and `typed` typed characters. Shared by the pure rule and its SQL measure
    (models/sliding_windows.py)."""
    start, end = span
    peak = ai_share(ai, typed)
    measured = {
        "peak_ai_share": round(peak, 4),
        "peak_ai_chars": ai,
        "peak_typed_chars": typed,
        "peak_total_chars": ai + typed,
        "peak_window_start": peak_window[0].isoformat(),
        "peak_window_end": peak_window[1].isoformat(),
    }
    severity = "high" if peak >= th.ai_high else "medium"
    return make_detection("high_ai_dependency", severity, (start, end), start.isoformat(), measured, th)


def grade_no_break(start: datetime, end: datetime, event_count: int,
                   th: DangerThresholds = _DEFAULT) -> Detection | None:
    """The no-break verdict on one run of events (first at `start`, last at `end`), or None below threshold."""
    levels = [("high", timedelta(hours=th.no_break_high_hours)), ("medium", timedelta(hours=th.no_break_medium_hours))]
    severity = grade(end - start, levels)
    if severity is None:
        return None
    measured = {
        "duration_minutes": round((end - start).total_seconds() / 60, 2),
        "run_start": start.isoformat(),
        "run_end": end.isoformat(),
        "event_count": event_count,
    }
    return make_detection("no_break", severity, (start, end), start.isoformat(), measured, th)


def detect_no_break(events: Events, th: DangerThresholds = _DEFAULT) -> list[Detection]:
    """Runs of events with no gap longer than no_break_gap_minutes between
    consecutive ones (a gap of exactly that length does not end the run)."""
    evs = prepare(events)
    gap = timedelta(minutes=th.no_break_gap_minutes)
    found = []
    first = 0
    for i in range(1, len(evs) + 1):
        if i < len(evs) and evs[i].ts - evs[i - 1].ts <= gap:
            continue
        detection = grade_no_break(evs[first].ts, evs[i - 1].ts, i - first, th)
        if detection is not None:
            found.append(detection)
        first = i
    return found


_HOUR = timedelta(hours=1)
_TICK = timedelta(microseconds=1)


def _in_night(local: datetime, th: DangerThresholds) -> bool:
    start, end = th.late_night_start_hour, th.late_night_end_hour
    hour = local.hour
    return start <= hour < end if start < end else (hour >= start or hour < end)


def night_bounds(day: date, th: DangerThresholds) -> tuple[datetime, datetime]:
    """Naive local [start, end) of the night that ends on `day`."""
    midnight = datetime.combine(day, time())
    start_day = midnight - timedelta(days=1) if th.late_night_start_hour > th.late_night_end_hour else midnight
    return start_day + timedelta(hours=th.late_night_start_hour), midnight + timedelta(hours=th.late_night_end_hour)


def detect_late_night_work(events: Events, th: DangerThresholds = _DEFAULT,
                           tz: tzinfo | None = None) -> list[Detection]:
    """Active minutes inside the developer's local night window.

    Active time = every gap between consecutive events of at most
    idle_timeout_seconds. A gap is placed in local time: in the developer's time
    zone `tz` when one is set, else with the offset of its EARLIER event (the
    zone the developer was in when that stretch began); then clipped to each
    night it touches.
    """
    idle = timedelta(seconds=th.idle_timeout_seconds)
    active: dict[date, timedelta] = {}  # keyed by the night's date
    first: dict[date, tuple[datetime, datetime]] = {}  # (utc, local) where the night's activity begins
    last: dict[date, tuple[datetime, datetime]] = {}  # ... and where it ends
    for a, b in pairwise(prepare(events)):
        gap = b.ts - a.ts
        if not timedelta(0) < gap <= idle:
            continue
        offset = tz.utcoffset(a.ts.astimezone(tz)) or timedelta(0) if tz else timedelta(minutes=a.utc_offset_minutes)
        local_a = (a.ts + offset).replace(tzinfo=None)
        if gap < _HOUR and not (_in_night(local_a, th) or _in_night(local_a + gap - _TICK, th)):
            # Nights are whole hours long: a gap shorter than an hour that touches one has an end inside it.
            continue
        day = local_a.date()
        while day <= (local_a + gap).date() + timedelta(days=1):
            night_start, night_end = night_bounds(day, th)
            lo, hi = max(local_a, night_start), min(local_a + gap, night_end)
            if lo < hi:
                active[day] = active.get(day, timedelta(0)) + (hi - lo)
                first.setdefault(day, ((lo - offset).replace(tzinfo=UTC), lo))
                last[day] = ((hi - offset).replace(tzinfo=UTC), hi)
            day += timedelta(days=1)
    found = []
    for day in sorted(active):
        detection = grade_late_night(day, active[day], first[day], last[day], th)
        if detection is not None:
            found.append(detection)
    return found


def grade_late_night(day: date, active: timedelta, first: tuple[datetime, datetime], last: tuple[datetime, datetime],
                     th: DangerThresholds = _DEFAULT) -> Detection | None:
    """The verdict on one night: `active` time inside it, from `first` to `last` ((UTC, naive local) each)."""
    levels = [
        ("medium", timedelta(minutes=th.late_night_medium_minutes)),
        ("low", timedelta(minutes=th.late_night_low_minutes)),
    ]
    severity = grade(active, levels)
    if severity is None:
        return None
    (start, local_start), (end, local_end) = first, last
    measured = {
        "night_date": day.isoformat(),
        "active_minutes": round(active.total_seconds() / 60, 2),
        "local_start": local_start.isoformat(),
        "local_end": local_end.isoformat(),
    }
    return make_detection("late_night_work", severity, (start, end), day.isoformat(), measured, th)


def nights_touching(local_lo: datetime, local_hi: datetime, th: DangerThresholds = _DEFAULT) -> list[date]:
    """The nights (by `night_bounds` date) whose window intersects the naive local span [local_lo, local_hi]."""
    days = []
    day = local_lo.date() - timedelta(days=1)
    while day <= local_hi.date() + timedelta(days=1):
        start, end = night_bounds(day, th)
        if start <= local_hi and local_lo < end:
            days.append(day)
        day += timedelta(days=1)
    return days


# Every rule takes (events, thresholds, the developer's time zone or None); only late-night work uses the zone.
Rule = Callable[[Events, DangerThresholds, tzinfo | None], list[Detection]]

RULES: dict[str, Rule] = {
    "excessive_errors": lambda events, th, tz: detect_excessive_errors(events, th),
    "extended_debugging": lambda events, th, tz: detect_extended_debugging(events, th),
    "high_ai_dependency": lambda events, th, tz: detect_high_ai_dependency(events, th),
    "no_break": lambda events, th, tz: detect_no_break(events, th),
    "late_night_work": detect_late_night_work,
}


# The raw event types each event-reading rule looks at (a reader may leave every other type out); None: all.
# The stored event types each sliding-window rule looks at: a reader may leave every other type out.
RULE_TYPES: dict[str, frozenset[str]] = {
    "excessive_errors": frozenset({"build.result", "test.result", "terminal.command", "diagnostics.snapshot"}),
    "high_ai_dependency": frozenset({*_AI_TYPES, "ai.completion", "file.edit"}),
}


def sliding_reach(pattern: str, th: DangerThresholds = _DEFAULT) -> timedelta:
    """How far one event reaches in a sliding-window rule: the window's length."""
    minutes = th.excessive_errors_window_minutes if pattern == "excessive_errors" else th.ai_window_minutes
    return timedelta(minutes=minutes)


def detect(events: Events, thresholds: DangerThresholds = _DEFAULT,
           tz: tzinfo | None = None) -> tuple[list[Detection], dict[str, str]]:
    """Every pattern for ONE developer's events, escalated and prioritized, and the rules that failed.

    Each rule runs on its own: an exception in one is collected in `errors` (rule name -> message) and the
    others still run, so a broken rule costs its own alerts and nothing else. Any permutation or duplication
    of the same events gives the identical result.
    """
    prepared = prepare(events)
    found: list[Detection] = []
    errors: dict[str, str] = {}
    for name, rule in RULES.items():
        try:
            found.extend(rule(prepared, thresholds, tz))
        except Exception as exc:  # isolation: one broken rule must not cost the others
            errors[name] = f"{type(exc).__name__}: {exc}"[:500]
    return prioritize(escalate_critical(found)), errors


def behind(pattern: str, event: NormalizedEvent, details: Mapping[str, Any]) -> bool:
    """Whether `event` (inside an alert's window) is one of the events the alert was measured from."""
    if pattern == "excessive_errors":
        return is_error_event(event)
    if pattern == "extended_debugging":
        return event.payload.get("debug_session_id") == details.get("debug_session_id") or not event.type.startswith(
            "debug.")
    if pattern == "high_ai_dependency":
        return event.type in _AI_TYPES or event.type == "file.edit"
    return True  # no_break, late_night_work: every event of the stretch counts
