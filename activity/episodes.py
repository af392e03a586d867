"""Shared machinery of the danger rules: sliding-window episodes and measures."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from activity.events import EPOCH

Measure = TypeVar("Measure", int, float, timedelta)


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
