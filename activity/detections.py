"""What the danger rules produce and how detections relate: thresholds, `Detection`, severity order,
escalation to critical and the priority order. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from activity import recommendations as _advice
from activity.episodes import micros

SEVERITY_ORDER: tuple[str, ...] = ("low", "medium", "high", "critical")


def severity_rank(severity: str) -> int:
    """0 for "low" up to 3 for "critical"; ValueError otherwise, so a typo can
    never silently sort as the least (or most) important alert."""
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
    max_debug_session_hours: float = 8

    def __post_init__(self) -> None:
        # Fail when the settings are loaded, not inside a rule: a zero window
        # would break the sliding-window sweep, equal hours make an empty night.
        if self.excessive_errors_window_minutes <= 0 or self.ai_window_minutes <= 0:
            raise ValueError("sliding windows must be longer than zero")
        start, end = self.late_night_start_hour, self.late_night_end_hour
        if not (0 <= start < 24 and 0 < end <= 24) or start == end:
            raise ValueError("late-night hours must form a non-empty window within a day")


    def for_developer(self, idle_timeout_seconds: int) -> DangerThresholds:
        """These thresholds with the developer's own idle timeout (late-night activity, debug sessions)."""
        return replace(self, idle_timeout_seconds=idle_timeout_seconds)

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, float]) -> DangerThresholds:
        """The defaults with `overrides` (field name -> value) applied; ValueError naming what is wrong.

        Called when web and workers start, so a bad DANGER_* variable stops start-up instead of every job.
        """
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, value in overrides.items():
            spec = known.get(name)
            if spec is None:
                raise ValueError(f"DANGER_{name.upper()} is not a danger threshold; known: "
                                 + ", ".join(f"DANGER_{k.upper()}" for k in sorted(known)))
            if isinstance(spec.default, int) and float(value) != int(value):
                raise ValueError(f"DANGER_{name.upper()} must be a whole number (got {value})")
            if value < 0:
                raise ValueError(f"DANGER_{name.upper()} must be >= 0 (got {value})")
            values[name] = int(value) if isinstance(spec.default, int) else float(value)
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"danger thresholds (DANGER_*): {exc}") from None


_DEFAULT = DangerThresholds()

# Which thresholds each pattern reports in its details (under the field names).
_THRESHOLD_PREFIXES = {
    "excessive_errors": ("excessive_errors_",),
    "extended_debugging": ("extended_debugging_", "max_debug_session_"),
    "high_ai_dependency": ("ai_",),
    "no_break": ("no_break_",),
    "late_night_work": ("late_night_", "idle_timeout_"),
}


@dataclass(frozen=True)
class Detection:
    """One episode of a pattern; `details` holds the measured figures and the
    thresholds used, JSON-serializable (numbers, strings, ISO timestamps)."""

    pattern: str
    severity: str
    window_start: datetime
    window_end: datetime
    episode_key: str
    details: dict[str, Any]
    recommendation: str


def make_detection(
    pattern: str,
    severity: str,
    span: tuple[datetime, datetime],
    key: str,
    measured: dict[str, Any],
    th: DangerThresholds,
) -> Detection:
    limits = {f.name: getattr(th, f.name) for f in fields(th) if f.name.startswith(_THRESHOLD_PREFIXES[pattern])}
    details = {**measured, **limits}
    return Detection(pattern, severity, *span, key, details, _advice.recommendation(pattern, severity, details))


_ESCALATION_KEYS = ("escalated_from", "critical_with")


def restated(pattern: str, severity: str, window: tuple[datetime, datetime], episode_key: str,
             details: Mapping[str, Any]) -> Detection:
    """A stored alert as its rule found it, before escalation: a partner when escalating detections of a run
    that did not re-derive it (it lies outside that run's reach)."""
    base = str(details.get("escalated_from", severity))
    plain = {k: v for k, v in details.items() if k not in _ESCALATION_KEYS}
    return Detection(pattern, base, window[0], window[1], episode_key, plain,
                     _advice.recommendation(pattern, base, plain))


def _overlap(a: Detection, b: Detection) -> bool:
    # Closed intervals: episodes touching at one instant hold "at once".
    return a.window_start <= b.window_end and b.window_start <= a.window_end


def escalate_critical(detections: Iterable[Detection]) -> list[Detection]:
    """Make critical every high detection whose episode overlaps a high
    detection of a DIFFERENT pattern.

    Critical ones count as high, so applying this twice changes nothing; the
    input order is kept.
    """
    items = list(detections)
    high = severity_rank("high")
    hot = [d for d in items if severity_rank(d.severity) >= high]
    out = []
    for d in items:
        partners = sorted({o.pattern for o in hot if o.pattern != d.pattern and _overlap(o, d)})
        if severity_rank(d.severity) < high or not partners:
            out.append(d)
            continue
        base = d.details.get("escalated_from", d.severity)
        details = {**d.details, "escalated_from": base, "critical_with": partners}
        advice = _advice.recommendation(d.pattern, "critical", details)
        out.append(replace(d, severity="critical", details=details, recommendation=advice))
    return out


def prioritize(detections: Iterable[Detection]) -> list[Detection]:
    """Highest severity first, then newest (window_end descending), then pattern
    name; episode key and start break any remaining tie, so the order is total."""
    return sorted(
        detections,
        key=lambda d: (
            -severity_rank(d.severity),
            -micros(d.window_end),
            d.pattern,
            d.episode_key,
            -micros(d.window_start),
        ),
    )
