"""Shared machinery of the danger rules: event preparation and sliding-window episodes."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from activity.events import NormalizedEvent

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Measure = TypeVar("Measure", int, float, timedelta)


def content_key(event: NormalizedEvent) -> tuple[datetime, str, str, int, str]:
    payload = json.dumps(event.payload, sort_keys=True, default=repr)
    return (event.ts, event.type, payload, event.utc_offset_minutes, event.session_id or "")


def prepare(events: Iterable[NormalizedEvent]) -> list[NormalizedEvent]:
    """Deduplicate by event_id, sort by (ts, event_id), times in UTC.

    Two different events sharing an id should not exist; if they do, the one
    with the smallest content wins whatever the input order, so no rule ever
    depends on the order of delivery.
    """
    chosen: dict[str, NormalizedEvent] = {}
    for event in events:
        if event.ts.tzinfo is None or event.ts.utcoffset() is None:
            raise ValueError(f"event {event.event_id}: ts must be timezone-aware")
        if event.ts.tzinfo is not UTC:  # ISO keys must not depend on the zone given
            event = replace(event, ts=event.ts.astimezone(UTC))
        current = chosen.get(event.event_id)
        if current is None or content_key(event) < content_key(current):
            chosen[event.event_id] = event
    return sorted(chosen.values(), key=lambda e: (e.ts, e.event_id))


def num(payload: dict[str, Any], key: str) -> float | None:
    """A finite number from the payload, or None (bools are not numbers here)."""
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


def grade(value: Measure, levels: Sequence[tuple[str, Measure]]) -> str | None:
    """The first severity (levels listed from highest down) whose threshold is met."""
    return next((severity for severity, threshold in levels if value >= threshold), None)


def micros(moment: datetime) -> int:
    # Exact integer ordering key; float timestamps could tie or misorder.
    return (moment - EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True)
class Episode:
    first: int  # index of the episode's first item
    last: int  # index of its last item
    peak_lo: int  # the peak window is items[peak_lo:peak_hi]
    peak_hi: int
    peak: float


def sliding_episodes(
    times: Sequence[datetime], window: timedelta, measure: Callable[[int, int], float | None]
) -> list[Episode]:
    """Merge overlapping qualifying windows into episodes.

    A window is the trailing interval (end - window, end] at each distinct item
    time; `measure(lo, hi)` returns the value of items[lo:hi] if it qualifies,
    else None. For a count this finds the maximum over "any window of that
    length" exactly; a share is judged as seen at the window's last event, which
    is what keeps windows immutable when later events arrive (stable keys).
    Windows overlap when their item spans (closed) intersect; the peak is the
    highest value, the earliest window on ties.
    """
    episodes: list[Episode] = []
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
            peak = (lo, hi, value) if value > prev.peak else (prev.peak_lo, prev.peak_hi, prev.peak)
            episodes[-1] = Episode(prev.first, hi - 1, *peak)
        else:
            episodes.append(Episode(lo, hi - 1, lo, hi, value))
    return episodes
