"""Danger patterns: pure rules that flag risky work habits in one developer's events.

Every rule takes the developer's normalized events (any order, duplicates
allowed) and returns `Detection`s. Each detection names an *episode* through a
deterministic `episode_key`, so the caller keeps one alert per (developer,
pattern, episode) and, when a later batch extends the episode, finds the same
key and updates that alert instead of adding another one.

Episode keys:
- excessive_errors / high_ai_dependency: ISO UTC time of the episode's first
  event. Windows are the trailing windows ending at each event, so a window's
  content never changes when strictly later events arrive; qualifying windows
  only accumulate and an episode's start, hence its key, is stable.
- extended_debugging: the payload's debug_session_id.
- no_break: ISO UTC time of the run's first event. A run grows forward and
  keeps its key. A late (backfilled) event that closes the gap between two runs
  merges them under the EARLIER run's key; the later run's key then no longer
  appears, and the caller should close that alert as superseded.
- late_night_work: the local calendar date of the night (YYYY-MM-DD; the date
  of the morning when the night window wraps past midnight).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any, TypeVar

from activity import recommendations as _advice
from activity.events import NormalizedEvent

SEVERITY_ORDER: tuple[str, ...] = ("low", "medium", "high", "critical")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_AI_TYPES = frozenset({"ai.suggestion_accepted", "ai.chat_insert"})
_Measure = TypeVar("_Measure", int, float, timedelta)


def severity_rank(severity: str) -> int:
    """0 for "low" up to 3 for "critical"; ValueError for anything else, so a
    typo can never silently sort as the least (or most) important alert."""
    try:
        return SEVERITY_ORDER.index(severity)
    except ValueError:
        raise ValueError(f"unknown severity {severity!r}") from None


@dataclass(frozen=True)
class DangerThresholds:
    """Tunable limits; the defaults are the product's published thresholds."""

    excessive_errors_window_minutes: float = 15
    excessive_errors_medium: int = 20
    excessive_errors_high: int = 40
    extended_debugging_medium_minutes: float = 60
    extended_debugging_high_minutes: float = 120
    ai_window_minutes: float = 60
    ai_min_chars: int = 500
    ai_medium: float = 0.70
    ai_high: float = 0.90
    no_break_gap_minutes: float = 10
    no_break_medium_hours: float = 3
    no_break_high_hours: float = 5
    late_night_start_hour: int = 0
    late_night_end_hour: int = 5
    late_night_low_minutes: float = 30
    late_night_medium_minutes: float = 120
    idle_timeout_seconds: float = 300

    def __post_init__(self) -> None:
        # Fail at configuration time rather than producing nonsense alerts later.
        if self.excessive_errors_window_minutes <= 0 or self.ai_window_minutes <= 0:
            raise ValueError("sliding windows must be longer than zero")
        if not (0 <= self.late_night_start_hour < 24 and 0 < self.late_night_end_hour <= 24):
            raise ValueError("late-night hours must lie within a day")
        if self.late_night_start_hour == self.late_night_end_hour:
            raise ValueError("late-night window must not be empty")
        pairs = [
            (self.excessive_errors_medium, self.excessive_errors_high),
            (self.extended_debugging_medium_minutes, self.extended_debugging_high_minutes),
            (self.ai_medium, self.ai_high),
            (self.no_break_medium_hours, self.no_break_high_hours),
            (self.late_night_low_minutes, self.late_night_medium_minutes),
        ]
        if any(lower > upper for lower, upper in pairs):
            raise ValueError("each lower severity threshold must not exceed the higher one")


DEFAULT_THRESHOLDS = DangerThresholds()

# The thresholds each pattern reports in its details, under their field names.
_THRESHOLD_FIELDS: dict[str, tuple[str, ...]] = {
    "excessive_errors": ("excessive_errors_window_minutes", "excessive_errors_medium", "excessive_errors_high"),
    "extended_debugging": ("extended_debugging_medium_minutes", "extended_debugging_high_minutes"),
    "high_ai_dependency": ("ai_window_minutes", "ai_min_chars", "ai_medium", "ai_high"),
    "no_break": ("no_break_gap_minutes", "no_break_medium_hours", "no_break_high_hours"),
    "late_night_work": (
        "late_night_start_hour",
        "late_night_end_hour",
        "late_night_low_minutes",
        "late_night_medium_minutes",
        "idle_timeout_seconds",
    ),
}


@dataclass(frozen=True)
class Detection:
    """One episode of a pattern. `details` holds the measured figures and the
    thresholds used, JSON-serializable (numbers, strings, ISO timestamps)."""

    pattern: str
    severity: str
    window_start: datetime
    window_end: datetime
    episode_key: str
    details: dict[str, Any] = field(hash=False)
    recommendation: str


def _found(
    pattern: str,
    severity: str,
    span: tuple[datetime, datetime],
    key: str,
    measured: dict[str, Any],
    th: DangerThresholds,
) -> Detection:
    """A fresh detection whose details are the measured figures plus the thresholds used."""
    details = {**measured, **{name: getattr(th, name) for name in _THRESHOLD_FIELDS[pattern]}}
    return Detection(pattern, severity, *span, key, details, _advice.recommendation(pattern, severity, details))


def _as_utc(event: NormalizedEvent) -> NormalizedEvent:
    # Stored events are already UTC-aware; this keeps ISO keys identical even if
    # a caller passes another zone (or a naive time, which we read as UTC).
    if event.ts.tzinfo is UTC:
        return event
    ts = event.ts.replace(tzinfo=UTC) if event.ts.tzinfo is None else event.ts.astimezone(UTC)
    return replace(event, ts=ts)


def _content_key(event: NormalizedEvent) -> tuple[datetime, str, str, int, str]:
    payload = json.dumps(event.payload, sort_keys=True, default=repr)
    return (event.ts, event.type, payload, event.utc_offset_minutes, event.session_id or "")


def _prepare(events: Iterable[NormalizedEvent]) -> list[NormalizedEvent]:
    """Deduplicate by event_id and sort by (ts, event_id).

    Two different events sharing an id should not happen; if they do, the same
    one (smallest content) wins whatever the input order, which keeps every
    rule independent of permutation.
    """
    chosen: dict[str, NormalizedEvent] = {}
    for raw in events:
        event = _as_utc(raw)
        current = chosen.get(event.event_id)
        if current is None or _content_key(event) < _content_key(current):
            chosen[event.event_id] = event
    return sorted(chosen.values(), key=lambda e: (e.ts, e.event_id))


def _num(payload: dict[str, Any], key: str) -> float | None:
    """A finite number from the payload, or None (bools are not numbers here)."""
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


def _chars(payload: dict[str, Any], key: str) -> int:
    value = _num(payload, key)
    return max(int(value), 0) if value is not None else 0


def _is_error_event(event: NormalizedEvent) -> bool:
    """Private twin of metrics.is_error_event (kept here so this module has no
    dependency on work in progress; to be deduplicated)."""
    payload = event.payload
    if event.type == "build.result":
        return payload.get("success") is False
    if event.type == "test.result":
        return (_num(payload, "failed") or 0) > 0
    if event.type == "terminal.command":
        code = _num(payload, "exit_code")
        return code is not None and code != 0
    if event.type == "diagnostics.snapshot":
        return (_num(payload, "errors") or 0) > 0
    return False


def _grade(value: _Measure, levels: Sequence[tuple[str, _Measure]]) -> str | None:
    """The first severity (levels go from highest down) whose threshold is met."""
    for severity, threshold in levels:
        if value >= threshold:
            return severity
    return None


def _micros(moment: datetime) -> int:
    # Exact integer ordering key; float timestamps could tie or misorder.
    return (moment - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class _Episode:
    first: int  # index of the episode's first event
    last: int  # index of its last event
    peak_lo: int  # peak window = items[peak_lo:peak_hi]
    peak_hi: int
    peak: float


def _sliding_episodes(
    times: Sequence[datetime], window: timedelta, measure: Callable[[int, int], float | None]
) -> list[_Episode]:
    """Merge overlapping qualifying windows into episodes.

    A window is the trailing interval (end - window, end] at each distinct event
    time; `measure(lo, hi)` returns the window's value if it qualifies, else
    None. For counts this finds the maximum of "any window of that length"
    exactly; for a share it judges each window as seen at its last event, which
    is what makes windows immutable once later events arrive (stable keys).
    Windows overlap when their event spans (closed) intersect. The peak is the
    highest value, the earliest window on ties.
    """
    episodes: list[_Episode] = []
    lo = hi = 0
    while hi < len(times):
        end = times[hi]
        while hi < len(times) and times[hi] == end:
            hi += 1
        while times[lo] <= end - window:
            lo += 1
        value = measure(lo, hi)
        if value is None:
            continue
        # Window starts never move backwards, so only the last episode can overlap.
        if episodes and times[lo] <= times[episodes[-1].last]:
            prev = episodes[-1]
            if value > prev.peak:
                episodes[-1] = _Episode(prev.first, hi - 1, lo, hi, value)
            else:
                episodes[-1] = replace(prev, last=hi - 1)
        else:
            episodes.append(_Episode(lo, hi - 1, lo, hi, value))
    return episodes


def detect_excessive_errors(
    events: Iterable[NormalizedEvent], th: DangerThresholds = DEFAULT_THRESHOLDS
) -> list[Detection]:
    """Error events within any excessive_errors_window_minutes window.

    "Within a 15-minute window" means the events span strictly less than 15
    minutes (a half-open window [s, s + 15 min)).
    """
    errors = [e for e in _prepare(events) if _is_error_event(e)]
    times = [e.ts for e in errors]
    window = timedelta(minutes=th.excessive_errors_window_minutes)

    def count(lo: int, hi: int) -> float | None:
        return hi - lo if hi - lo >= th.excessive_errors_medium else None

    found = []
    for ep in _sliding_episodes(times, window, count):
        peak = int(ep.peak)
        severity = "high" if peak >= th.excessive_errors_high else "medium"
        details = {
            "peak_error_count": peak,
            "peak_window_start": times[ep.peak_lo].isoformat(),
            "peak_window_end": times[ep.peak_hi - 1].isoformat(),
            "episode_error_count": ep.last - ep.first + 1,
        }
        start, end = times[ep.first], times[ep.last]
        found.append(_found("excessive_errors", severity, (start, end), start.isoformat(), details, th))
    return found


def _debug_sessions(events: Sequence[NormalizedEvent]) -> list[tuple[str, datetime, datetime, bool]]:
    """(debug_session_id, start, end, still_open) for every started session.

    A session runs from its earliest debug.start to the first debug.stop with
    the same id at or after it, or to the developer's last event if none. A
    start without an id cannot be matched or keyed and is ignored; a reused id
    after its stop is treated as the same (already closed) session.
    """
    starts: dict[str, datetime] = {}
    for e in events:
        sid = e.payload.get("debug_session_id")
        if e.type == "debug.start" and isinstance(sid, str | int) and str(sid) not in starts:
            starts[str(sid)] = e.ts
    # Second pass: a stop sharing the start's timestamp may sort before it.
    stops: dict[str, datetime] = {}
    for e in events:
        sid = e.payload.get("debug_session_id")
        if e.type != "debug.stop" or not isinstance(sid, str | int):
            continue
        key = str(sid)
        if key in starts and key not in stops and e.ts >= starts[key]:
            stops[key] = e.ts
    last = events[-1].ts if events else _EPOCH
    return sorted((sid, start, stops.get(sid, last), sid not in stops) for sid, start in starts.items())


def detect_extended_debugging(
    events: Iterable[NormalizedEvent], th: DangerThresholds = DEFAULT_THRESHOLDS
) -> list[Detection]:
    """One debug session lasting extended_debugging_*_minutes or longer."""
    levels = [
        ("high", timedelta(minutes=th.extended_debugging_high_minutes)),
        ("medium", timedelta(minutes=th.extended_debugging_medium_minutes)),
    ]
    found = []
    for sid, start, end, still_open in _debug_sessions(_prepare(events)):
        severity = _grade(end - start, levels)
        if severity is None:
            continue
        seconds = (end - start).total_seconds()
        details = {
            "debug_session_id": sid,
            "duration_minutes": round(seconds / 60, 2),
            "duration_seconds": seconds,
            "still_open": still_open,
            "started_at": start.isoformat(),
            "ended_at": end.isoformat(),
        }
        found.append(_found("extended_debugging", severity, (start, end), sid, details, th))
    return found


def detect_high_ai_dependency(
    events: Iterable[NormalizedEvent], th: DangerThresholds = DEFAULT_THRESHOLDS
) -> list[Detection]:
    """Share of AI-inserted characters among all added characters per window,
    judged only when the window holds at least ai_min_chars characters."""
    items: list[tuple[datetime, int, int]] = []
    for e in _prepare(events):
        ai = _chars(e.payload, "chars_inserted") if e.type in _AI_TYPES else 0
        typed = _chars(e.payload, "chars_typed") if e.type == "file.edit" else 0
        if ai or typed:  # zero-character events would only stretch the extent
            items.append((e.ts, ai, typed))
    times = [t for t, _, _ in items]
    ai_sum, typed_sum = [0], [0]
    for _, ai, typed in items:
        ai_sum.append(ai_sum[-1] + ai)
        typed_sum.append(typed_sum[-1] + typed)

    def share(lo: int, hi: int) -> float | None:
        ai = ai_sum[hi] - ai_sum[lo]
        total = ai + typed_sum[hi] - typed_sum[lo]
        if total < th.ai_min_chars or total == 0:
            return None
        value = ai / total  # correctly rounded, so 7000/10000 == 0.70 exactly
        return value if value >= th.ai_medium else None

    found = []
    for ep in _sliding_episodes(times, timedelta(minutes=th.ai_window_minutes), share):
        ai = ai_sum[ep.peak_hi] - ai_sum[ep.peak_lo]
        typed = typed_sum[ep.peak_hi] - typed_sum[ep.peak_lo]
        details = {
            "peak_ai_share": round(ep.peak, 4),
            "peak_ai_chars": ai,
            "peak_typed_chars": typed,
            "peak_total_chars": ai + typed,
            "peak_window_start": times[ep.peak_lo].isoformat(),
            "peak_window_end": times[ep.peak_hi - 1].isoformat(),
        }
        severity = "high" if ep.peak >= th.ai_high else "medium"
        start, end = times[ep.first], times[ep.last]
        found.append(_found("high_ai_dependency", severity, (start, end), start.isoformat(), details, th))
    return found


def detect_no_break(events: Iterable[NormalizedEvent], th: DangerThresholds = DEFAULT_THRESHOLDS) -> list[Detection]:
    """Runs of activity with no gap longer than no_break_gap_minutes (a gap of
    exactly that length does not break the run)."""
    evs = _prepare(events)
    gap = timedelta(minutes=th.no_break_gap_minutes)
    levels = [("high", timedelta(hours=th.no_break_high_hours)), ("medium", timedelta(hours=th.no_break_medium_hours))]
    found = []
    first = 0
    for i in range(1, len(evs) + 1):
        if i < len(evs) and evs[i].ts - evs[i - 1].ts <= gap:
            continue
        start, end = evs[first].ts, evs[i - 1].ts
        severity = _grade(end - start, levels)
        if severity is not None:
            details = {
                "duration_minutes": round((end - start).total_seconds() / 60, 2),
                "run_start": start.isoformat(),
                "run_end": end.isoformat(),
                "event_count": i - first,
            }
            found.append(_found("no_break", severity, (start, end), start.isoformat(), details, th))
        first = i
    return found


@dataclass
class _Night:
    active: timedelta
    first_utc: datetime
    last_utc: datetime
    first_local: datetime
    last_local: datetime


def _night_bounds(day: date, th: DangerThresholds) -> tuple[datetime, datetime]:
    """Naive local [start, end) of the night that ends on `day`."""
    midnight = datetime.combine(day, time())
    start_day = midnight - timedelta(days=1) if th.late_night_start_hour > th.late_night_end_hour else midnight
    return start_day + timedelta(hours=th.late_night_start_hour), midnight + timedelta(hours=th.late_night_end_hour)


def detect_late_night_work(
    events: Iterable[NormalizedEvent], th: DangerThresholds = DEFAULT_THRESHOLDS
) -> list[Detection]:
    """Active minutes inside the local night window.

    Activity = each gap between consecutive events of at most
    idle_timeout_seconds. A gap is placed in local time with the offset of its
    EARLIER event (the zone the developer was in when that stretch began), then
    clipped to each night it touches.
    """
    evs = _prepare(events)
    idle = timedelta(seconds=th.idle_timeout_seconds)
    nights: dict[date, _Night] = {}
    for a, b in pairwise(evs):
        gap = b.ts - a.ts
        if not timedelta(0) < gap <= idle:
            continue
        offset = timedelta(minutes=a.utc_offset_minutes)
        local_a = (a.ts + offset).replace(tzinfo=None)
        local_b = local_a + gap
        day = local_a.date()
        while day <= local_b.date() + timedelta(days=1):
            night_start, night_end = _night_bounds(day, th)
            lo, hi = max(local_a, night_start), min(local_b, night_end)
            if lo < hi:
                lo_utc, hi_utc = (lo - offset).replace(tzinfo=UTC), (hi - offset).replace(tzinfo=UTC)
                tally = nights.get(day)
                if tally is None:
                    nights[day] = _Night(hi - lo, lo_utc, hi_utc, lo, hi)
                else:
                    tally.active += hi - lo
                    tally.last_utc, tally.last_local = hi_utc, hi
            day += timedelta(days=1)
    levels = [
        ("medium", timedelta(minutes=th.late_night_medium_minutes)),
        ("low", timedelta(minutes=th.late_night_low_minutes)),
    ]
    found = []
    for day, tally in sorted(nights.items()):
        severity = _grade(tally.active, levels)
        if severity is None:
            continue
        details = {
            "night_date": day.isoformat(),
            "active_minutes": round(tally.active.total_seconds() / 60, 2),
            "local_start": tally.first_local.isoformat(),
            "local_end": tally.last_local.isoformat(),
        }
        span = (tally.first_utc, tally.last_utc)
        found.append(_found("late_night_work", severity, span, day.isoformat(), details, th))
    return found


Rule = Callable[[Iterable[NormalizedEvent], DangerThresholds], list[Detection]]

RULES: dict[str, Rule] = {
    "excessive_errors": detect_excessive_errors,
    "extended_debugging": detect_extended_debugging,
    "high_ai_dependency": detect_high_ai_dependency,
    "no_break": detect_no_break,
    "late_night_work": detect_late_night_work,
}


def escalate_critical(detections: Iterable[Detection]) -> list[Detection]:
    """Raise to critical every high detection whose episode overlaps (closed
    intervals) a high detection of a DIFFERENT pattern.

    Already-critical detections count as high, so applying this twice changes
    nothing. Input order is preserved.
    """
    items = list(detections)
    high = severity_rank("high")
    hot = [d for d in items if severity_rank(d.severity) >= high]
    out = []
    for d in items:
        if severity_rank(d.severity) < high:
            out.append(d)
            continue
        partners = sorted(
            {
                o.pattern
                for o in hot
                if o.pattern != d.pattern and o.window_start <= d.window_end and d.window_start <= o.window_end
            }
        )
        if not partners:
            out.append(d)
            continue
        base = d.details.get("escalated_from", d.severity)
        details = {**d.details, "escalated_from": base, "critical_with": partners}
        advice = _advice.recommendation(d.pattern, "critical", details)
        out.append(replace(d, severity="critical", details=details, recommendation=advice))
    return out


def prioritize(detections: Iterable[Detection]) -> list[Detection]:
    """Highest severity first, then newest (window_end descending), then
    pattern name; episode key and start break any remaining tie."""
    return sorted(
        detections,
        key=lambda d: (
            -severity_rank(d.severity),
            -_micros(d.window_end),
            d.pattern,
            d.episode_key,
            -_micros(d.window_start),
        ),
    )


def detect(events: Iterable[NormalizedEvent], thresholds: DangerThresholds = DEFAULT_THRESHOLDS) -> list[Detection]:
    """All patterns for ONE developer's events, escalated and prioritized.

    Deterministic and idempotent: any permutation or duplication of the same
    events gives the identical list.
    """
    prepared = _prepare(events)
    found = [d for rule in RULES.values() for d in rule(prepared, thresholds)]
    return prioritize(escalate_critical(found))
