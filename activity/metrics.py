"""Metric definitions: one developer's normalized events -> per-hour and
per-day UTC buckets.

Everything here is a pure function of the *set* of events: the same events in
any order, delivered any number of times, give identical output. Ingestion
delivers at least once and out of order, and re-aggregation must be able to
recompute a day from scratch and land on the same numbers. Durations are
summed as exact timedeltas and converted to float only at the end, so float
rounding cannot depend on summation order either.
"""

from __future__ import annotations

import dataclasses
import json
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from activity.events import NormalizedEvent

Granularity = Literal["hour", "day"]
GRANULARITIES: tuple[Granularity, ...] = ("day", "hour")
_STEP: dict[Granularity, timedelta] = {"hour": timedelta(hours=1), "day": timedelta(days=1)}

METRIC_NAMES: tuple[str, ...] = (
    "events",
    "active_seconds",
    "edits",
    "lines_added",
    "lines_deleted",
    "saves",
    "error_events",
    "builds",
    "build_failures",
    "tests_passed",
    "tests_failed",
    "debug_seconds",
    "typed_chars",
    "ai_chars_inserted",
    "ai_share",
    "commits",
)

DEBUGGING_CATEGORY = "debugging"
HEARTBEAT_SESSION_PREFIX = "heartbeat:"


@dataclass(frozen=True)
class BucketMetrics:
    """The metrics of one developer in one UTC hour or day."""

    granularity: Granularity
    bucket_start: datetime
    events: int
    active_seconds: float
    edits: int
    lines_added: int
    lines_deleted: int
    saves: int
    error_events: int
    builds: int
    build_failures: int
    tests_passed: int
    tests_failed: int
    debug_seconds: float
    typed_chars: int
    ai_chars_inserted: int
    ai_share: float | None
    commits: int

    def as_dict(self) -> dict[str, int | float | None]:
        """The metric columns (METRIC_NAMES), without granularity and start."""
        return {name: getattr(self, name) for name in METRIC_NAMES}


@dataclass
class _Accumulator:
    events: int = 0
    active: timedelta = timedelta(0)
    edits: int = 0
    lines_added: int = 0
    lines_deleted: int = 0
    saves: int = 0
    error_events: int = 0
    builds: int = 0
    build_failures: int = 0
    tests_passed: int = 0
    tests_failed: int = 0
    debug: timedelta = timedelta(0)
    typed_chars: int = 0
    ai_chars_inserted: int = 0
    commits: int = 0

    def freeze(self, granularity: Granularity, bucket_start: datetime) -> BucketMetrics:
        ai_total = self.ai_chars_inserted + self.typed_chars
        return BucketMetrics(
            granularity=granularity,
            bucket_start=bucket_start,
            events=self.events,
            active_seconds=self.active.total_seconds(),
            edits=self.edits,
            lines_added=self.lines_added,
            lines_deleted=self.lines_deleted,
            saves=self.saves,
            error_events=self.error_events,
            builds=self.builds,
            build_failures=self.build_failures,
            tests_passed=self.tests_passed,
            tests_failed=self.tests_failed,
            debug_seconds=self.debug.total_seconds(),
            typed_chars=self.typed_chars,
            ai_chars_inserted=self.ai_chars_inserted,
            ai_share=self.ai_chars_inserted / ai_total if ai_total else None,
            commits=self.commits,
        )


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def bucket_floor(ts: datetime, granularity: Granularity) -> datetime:
    """The UTC start of the hour or day containing `ts`."""
    _require_aware("ts", ts)
    utc = ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return utc.replace(hour=0) if granularity == "day" else utc


def _count(payload: dict[str, Any], key: str) -> int:
    # Validation guarantees counts are ints >= 0; anything else (missing,
    # bool, negative) contributes nothing rather than corrupting a sum.
    value = payload.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return 0


def _canonical_key(event: NormalizedEvent) -> tuple[Any, ...]:
    payload = json.dumps(event.payload, sort_keys=True, default=repr)
    return (event.ts, event.type, payload, event.utc_offset_minutes, event.session_id or "")


def _dedupe_sorted(events: Iterable[NormalizedEvent]) -> list[NormalizedEvent]:
    """One event per event_id, timestamps in UTC, sorted by (ts, event_id).

    Copies of an event are normally identical; if two differ anyway, the same
    one must win whatever the arrival order, so the winner is the smallest by
    content rather than the first or last seen.
    """
    chosen: dict[str, NormalizedEvent] = {}
    for event in events:
        _require_aware(f"ts of event {event.event_id!r}", event.ts)
        if event.ts.tzinfo is not UTC:
            event = dataclasses.replace(event, ts=event.ts.astimezone(UTC))
        previous = chosen.get(event.event_id)
        if previous is None or (previous != event and _canonical_key(event) < _canonical_key(previous)):
            chosen[event.event_id] = event
    return sorted(chosen.values(), key=lambda e: (e.ts, e.event_id))


def is_error_event(event: NormalizedEvent) -> bool:
    """Whether the event signals an error: a failed build, a test run with
    failures, a non-zero terminal exit code or diagnostics with errors."""
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


def _debug_intervals_sorted(
    ordered: list[NormalizedEvent], last_ts: datetime, idle: timedelta
) -> list[tuple[datetime, datetime, str]]:
    starts: list[tuple[datetime, str]] = []
    stops: dict[str, list[datetime]] = {}
    heartbeat_runs: list[tuple[datetime, datetime]] = []
    run: list[datetime] = []  # [first, last] of the current heartbeat run
    for event in ordered:
        if event.type in ("debug.start", "debug.stop"):
            session_id = event.payload.get("debug_session_id")
            if not isinstance(session_id, str):
                continue
            if event.type == "debug.start":
                starts.append((event.ts, session_id))
            else:
                stops.setdefault(session_id, []).append(event.ts)
        elif event.type == "editor.heartbeat" and event.payload.get("category") == DEBUGGING_CATEGORY:
            if run and event.ts - run[1] <= idle:
                run[1] = event.ts
            else:
                if run:
                    heartbeat_runs.append((run[0], run[1]))
                run = [event.ts, event.ts]
    if run:
        heartbeat_runs.append((run[0], run[1]))

    last = last_ts.astimezone(UTC)
    intervals: list[tuple[datetime, datetime, str]] = []
    for start, session_id in starts:
        # Stops are not consumed: a repeated start before the stop (e.g. a
        # restarted extension re-announcing the session) pairs with that same
        # stop, exactly as "the first stop at or after the start" says.
        session_stops = stops.get(session_id, [])
        index = bisect_left(session_stops, start)
        end = session_stops[index] if index < len(session_stops) else max(start, last)
        intervals.append((start, end, session_id))
    for first, final in heartbeat_runs:
        # A lone heartbeat says "debugging" but has no measurable duration.
        if final > first:
            intervals.append((first, final, HEARTBEAT_SESSION_PREFIX + first.isoformat()))
    intervals.sort()
    return intervals


def debug_intervals(
    events: Iterable[NormalizedEvent], last_ts: datetime, *, idle_timeout_seconds: int = 300
) -> list[tuple[datetime, datetime, str]]:
    """Debugging intervals (start, end, session id) in UTC, sorted.

    debug.start pairs with the first debug.stop of the same debug_session_id
    at or after it; without one it lasts until `last_ts` (callers pass the
    developer's last event time). Runs of editor.heartbeat events with
    category "debugging" no more than `idle_timeout_seconds` apart form one
    interval from the first to the last heartbeat, with session id
    "heartbeat:<start isoformat>"; a single heartbeat forms none.
    Events are deduplicated by event_id first.
    """
    _require_aware("last_ts", last_ts)
    ordered = _dedupe_sorted(events)
    return _debug_intervals_sorted(ordered, last_ts, timedelta(seconds=idle_timeout_seconds))


def _split(start: datetime, end: datetime, granularity: Granularity) -> Iterator[tuple[datetime, timedelta]]:
    """The wall-clock overlap of [start, end) with each bucket it touches."""
    step = _STEP[granularity]
    bucket = bucket_floor(start, granularity)
    while bucket < end:
        following = bucket + step
        overlap = min(end, following) - max(start, bucket)
        if overlap > timedelta(0):
            yield bucket, overlap
        bucket = following


def _add_event(acc: _Accumulator, event: NormalizedEvent, error: bool) -> None:
    payload = event.payload
    acc.events += 1
    if error:
        acc.error_events += 1
    if event.type == "file.edit":
        acc.edits += 1
        acc.lines_added += _count(payload, "lines_added")
        acc.lines_deleted += _count(payload, "lines_deleted")
        acc.typed_chars += _count(payload, "chars_typed")
    elif event.type == "file.save":
        acc.saves += 1
    elif event.type == "build.result":
        acc.builds += 1
        if payload.get("success") is False:
            acc.build_failures += 1
    elif event.type == "test.result":
        acc.tests_passed += _count(payload, "passed")
        acc.tests_failed += _count(payload, "failed")
    elif event.type in ("ai.suggestion_accepted", "ai.chat_insert"):
        acc.ai_chars_inserted += _count(payload, "chars_inserted")
    elif event.type == "git.commit":
        acc.commits += 1


def compute_metrics(
    events: Iterable[NormalizedEvent],
    *,
    idle_timeout_seconds: int = 300,
    since: datetime | None = None,
) -> list[BucketMetrics]:
    """Hour and day buckets of one developer's events, sorted by
    (granularity, bucket_start).

    Events are deduplicated by event_id and may come in any order. All given
    events serve as context (activity gaps, debug pairing, the end of
    unmatched debug sessions), but with `since` only buckets starting at or
    after `since` floored to the bucket's granularity are returned. Callers
    must align `since` to a UTC day start: then the hour and the day buckets
    returned cover exactly the same period.
    """
    if idle_timeout_seconds < 0:
        raise ValueError("idle_timeout_seconds must be >= 0")
    if since is not None:
        _require_aware("since", since)
    ordered = _dedupe_sorted(events)
    if not ordered:
        return []
    idle = timedelta(seconds=idle_timeout_seconds)
    buckets: dict[tuple[Granularity, datetime], _Accumulator] = {}

    def bucket(granularity: Granularity, start: datetime) -> _Accumulator:
        key = (granularity, start)
        if key not in buckets:
            buckets[key] = _Accumulator()
        return buckets[key]

    for index, event in enumerate(ordered):
        error = is_error_event(event)
        # The gap to the next event belongs to the earlier event's bucket even
        # when it crosses a boundary: that is where the activity started.
        gap = timedelta(0)
        if index + 1 < len(ordered):
            candidate = ordered[index + 1].ts - event.ts
            if candidate <= idle:
                gap = candidate
        for granularity in GRANULARITIES:
            acc = bucket(granularity, bucket_floor(event.ts, granularity))
            _add_event(acc, event, error)
            acc.active += gap

    for start, end, _session in _debug_intervals_sorted(ordered, ordered[-1].ts, idle):
        for granularity in GRANULARITIES:
            for bucket_start, overlap in _split(start, end, granularity):
                bucket(granularity, bucket_start).debug += overlap

    result: list[BucketMetrics] = []
    for (granularity, start), acc in sorted(buckets.items()):
        if since is not None and start < bucket_floor(since, granularity):
            continue
        result.append(acc.freeze(granularity, start))
    return result
