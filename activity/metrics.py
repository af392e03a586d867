"""Metric definitions: one developer's events -> 15-minute UTC slots, the unit every bucket is summed from.

Hours (UTC), the developer's local days and ISO weeks are sums of slots, so a bucket of any size and any
time zone (all zones are whole quarter hours from UTC) is exact without storing it, and a time-zone change
needs no recomputation. Durations are integer microseconds: sums are exact in any order.

Everything here is a pure function of the *set* of events: the same events in any order, delivered any
number of times, give identical output.

- `active_us`: the events sorted by (corrected time, batch received order, seq); each gap to the next event
  that is at most the idle timeout counts in full, split across the slots it spans by wall clock; longer
  gaps count 0. No slot ever exceeds its length. An active gap belongs to the earlier event's language and
  project ("unknown" when it has none) in the breakdowns.
- `debug_us`: wall-clock time covered by at least one debug session or debugging-heartbeat run
  (activity/sessions.py), overlaps counted once.
- Counts are per event, in the slot of the event's time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from activity.catalog import MAX_PROJECT_LENGTH
from activity.events import NormalizedEvent, prepare
from activity.normalization import declared_language
from activity.sessions import MAX_DEBUG_SESSION, debug_intervals

SLOT = timedelta(minutes=15)
_US = timedelta(microseconds=1)
UNKNOWN = "unknown"

# Summed counts are capped per event at ingest (activity.catalog.MAX_SUMMED_COUNT); sums saturate here as a
# second guard so no stored value can overflow its BIGINT column, whatever the number of events.
MAX_SUM = 2**63 - 1


@dataclass(frozen=True)
class SlotMetrics:
    """The metrics of one developer in one 15-minute UTC slot."""

    slot_start: datetime
    events: int = 0
    active_us: int = 0
    edits: int = 0
    lines_added: int = 0
    lines_deleted: int = 0
    saves: int = 0
    error_events: int = 0
    builds: int = 0
    build_failures: int = 0
    tests_passed: int = 0
    tests_failed: int = 0
    debug_us: int = 0
    typed_chars: int = 0
    ai_chars_inserted: int = 0
    commits: int = 0


# The summed columns of a slot (what the metrics table stores besides its key).
SLOT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(SlotMetrics) if f.name != "slot_start")


@dataclass(frozen=True)
class SlotBreakdown:
    """Active time of one slot that belongs to one language or one project."""

    slot_start: datetime
    dimension: str  # "language" | "project"
    key: str
    active_us: int


@dataclass(frozen=True)
class SlotResult:
    metrics: list[SlotMetrics]
    breakdowns: list[SlotBreakdown]


def slot_floor(ts: datetime) -> datetime:
    """The UTC start of the 15-minute slot containing `ts`."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise ValueError("ts must be timezone-aware")
    utc = ts.astimezone(UTC)
    return utc.replace(minute=utc.minute - utc.minute % 15, second=0, microsecond=0)


def slot_ceil(ts: datetime) -> datetime:
    floor = slot_floor(ts)
    return floor if floor == ts else floor + SLOT


def _count(payload: dict[str, Any], key: str) -> int:
    # Validation guarantees counts are ints >= 0; anything else (missing, bool, negative) contributes nothing.
    value = payload.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 0


def is_error_event(event: NormalizedEvent) -> bool:
    """Whether the event signals an error: a failed build, a test run with failures, a non-zero terminal
    exit code or diagnostics with errors."""
    payload = event.payload
    if event.type == "build.result":
        return payload.get("success") is False
    if event.type == "test.result":
        return _count(payload, "failed") > 0
    if event.type == "terminal.command":
        code = payload.get("exit_code")
        return isinstance(code, int) and not isinstance(code, bool) and code != 0
    if event.type == "diagnostics.snapshot":
        return _count(payload, "errors") > 0
    return False


def event_language(event: NormalizedEvent) -> str:
    return declared_language(event) or UNKNOWN


def event_project(event: NormalizedEvent) -> str:
    if event.project:
        return event.project
    # Only a heartbeat's payload defines `project` (and ingest bounds it); elsewhere it is an unknown extra field.
    project = event.payload.get("project") if event.type == "editor.heartbeat" else None
    return project if isinstance(project, str) and 0 < len(project) <= MAX_PROJECT_LENGTH else UNKNOWN


def _split(start: datetime, end: datetime) -> Iterator[tuple[datetime, int]]:
    """(slot start, microseconds) of the wall-clock overlap of [start, end) with each slot it touches."""
    slot = slot_floor(start)
    while slot < end:
        following = slot + SLOT
        overlap = min(end, following) - max(start, slot)
        if overlap > timedelta(0):
            yield slot, overlap // _US
        slot = following


class _Slot:
    __slots__ = SLOT_COLUMNS

    def __init__(self) -> None:
        for name in SLOT_COLUMNS:
            setattr(self, name, 0)

    def add(self, name: str, value: int) -> None:
        setattr(self, name, min(MAX_SUM, getattr(self, name) + value))


def _add_event(acc: _Slot, event: NormalizedEvent) -> None:
    payload = event.payload
    acc.add("events", 1)
    if is_error_event(event):
        acc.add("error_events", 1)
    if event.type == "file.edit":
        acc.add("edits", 1)
        acc.add("lines_added", _count(payload, "lines_added"))
        acc.add("lines_deleted", _count(payload, "lines_deleted"))
        acc.add("typed_chars", _count(payload, "chars_typed"))
    elif event.type == "file.save":
        acc.add("saves", 1)
    elif event.type == "build.result":
        acc.add("builds", 1)
        if payload.get("success") is False:
            acc.add("build_failures", 1)
    elif event.type == "test.result":
        acc.add("tests_passed", _count(payload, "passed"))
        acc.add("tests_failed", _count(payload, "failed"))
    elif event.type in ("ai.suggestion_accepted", "ai.chat_insert"):
        acc.add("ai_chars_inserted", _count(payload, "chars_inserted"))
    elif event.type == "git.commit":
        acc.add("commits", 1)


def compute_slots(
    events: Iterable[NormalizedEvent], *, since: datetime, until: datetime, idle_timeout_seconds: int = 300,
    max_debug_session: timedelta = MAX_DEBUG_SESSION, ignored_session_ids: frozenset[str] = frozenset(),
) -> SlotResult:
    """The slots in [since, until) (both slot-aligned) that hold any event or any active or debug time.

    Every given event serves as context (activity gaps, debug sessions); the caller must give all stored
    events from `since` - max_debug_session - idle to `until` + max_debug_session + idle for an exact result
    (see models/aggregation.py), and the ids of debug sessions that started before those events.
    """
    if slot_floor(since) != since or slot_floor(until) != until:
        raise ValueError("since and until must be slot-aligned")
    if idle_timeout_seconds < 0:
        raise ValueError("idle_timeout_seconds must be >= 0")
    ordered = prepare(events)
    idle = timedelta(seconds=idle_timeout_seconds)
    slots: dict[datetime, _Slot] = {}
    shares: dict[tuple[datetime, str, str], int] = {}

    def slot(start: datetime) -> _Slot:
        found = slots.get(start)
        if found is None:
            found = slots[start] = _Slot()
        return found

    for index, event in enumerate(ordered):
        if since <= event.ts < until:
            _add_event(slot(slot_floor(event.ts)), event)
        if index + 1 == len(ordered):
            break
        following = ordered[index + 1].ts
        if following - event.ts > idle or following <= since or event.ts >= until:
            continue
        language, project = event_language(event), event_project(event)
        for start, micros in _split(max(event.ts, since), min(following, until)):
            slot(start).add("active_us", micros)
            for dimension, key in (("language", language), ("project", project)):
                shares[(start, dimension, key)] = shares.get((start, dimension, key), 0) + micros

    for start, end in debug_intervals(ordered, idle=idle, max_session=max_debug_session,
                                      ignored_ids=ignored_session_ids):
        lo, hi = max(start, since), min(end, until)
        if lo < hi:
            for slot_start, micros in _split(lo, hi):
                slot(slot_start).add("debug_us", micros)

    metrics = [SlotMetrics(slot_start=start, **{name: getattr(acc, name) for name in SLOT_COLUMNS})
               for start, acc in sorted(slots.items())]
    breakdowns = [SlotBreakdown(start, dimension, key, micros)
                  for (start, dimension, key), micros in sorted(shares.items()) if micros > 0]
    return SlotResult(metrics, breakdowns)
