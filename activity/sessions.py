"""Debug sessions: the one definition that debug time (metrics) and `extended_debugging` (danger) share.

A debug session (one `debug_session_id`) runs from its earliest `debug.start` to the EARLIEST of:
- the first `debug.stop` of that id at or after the start;
- the last event before the developer's first idle gap after the start (a gap longer than the idle
  timeout), or the developer's last event so far;
- the start + `max_session` (8 hours by default).
So an abandoned session (the editor crashed before `debug.stop`) ends where the developer went idle, and
no event can change debug time more than `max_session` + the idle timeout before it: recomputation is
bounded whatever the history.

Runs of `editor.heartbeat` events with category "debugging" no more than the idle timeout apart also
count as debugging, from the first to the last heartbeat of the run.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from activity.events import NormalizedEvent

DEBUGGING_CATEGORY = "debugging"
MAX_DEBUG_SESSION = timedelta(hours=8)

EndReason = Literal["stop", "idle", "max_length", "open"]


@dataclass(frozen=True)
class DebugSession:
    session_id: str
    start: datetime
    end: datetime
    # "open": no stop, no idle gap and not at its maximum length yet: it lasts until the latest event so far.
    ended_by: EndReason

    @property
    def still_open(self) -> bool:
        return self.ended_by == "open"


def _session_id(event: NormalizedEvent) -> str | None:
    value = event.payload.get("debug_session_id")
    return value if isinstance(value, str) and value else None


def activity_runs(times: Sequence[datetime], gap: timedelta) -> list[tuple[datetime, datetime]]:
    """(first, last) of each run of sorted `times` in which no two neighbours are more than `gap` apart."""
    runs: list[tuple[datetime, datetime]] = []
    for t in times:
        if runs and t - runs[-1][1] <= gap:
            runs[-1] = (runs[-1][0], t)
        else:
            runs.append((t, t))
    return runs


def still_running(starts: dict[str, datetime], stops: dict[str, list[datetime]],
                  before: datetime) -> list[datetime]:
    """Starts (session id -> earliest start) of the sessions that began before `before` with no stop of theirs
    in between: the only earlier sessions that events from `before` on can lengthen or end."""
    return [ts for sid, ts in starts.items()
            if ts < before and not any(ts <= stop < before for stop in stops.get(sid, ()))]


def debug_sessions(
    ordered: Sequence[NormalizedEvent], *, idle: timedelta, max_session: timedelta = MAX_DEBUG_SESSION,
    ignored_ids: frozenset[str] = frozenset(), runs: Sequence[tuple[datetime, datetime]] | None = None,
) -> list[DebugSession]:
    """The sessions of ONE developer's events, which must be `activity.events.prepare`d (deduplicated, ordered).

    `ignored_ids`: sessions whose earliest start lies before the given events (a caller reading a bounded
    window passes them, so a repeated start of an old session is not taken for a new one).
    `runs`: the developer's `activity_runs` (gap = `idle`) over the same span, when `ordered` holds only the
    debug events: where the developer went idle is then read from the runs instead of from every event.
    """
    starts: dict[str, datetime] = {}
    stops: dict[str, list[datetime]] = {}
    if runs is None:
        runs = activity_runs([e.ts for e in ordered], idle)
    run_starts = [first for first, _ in runs]
    for event in ordered:
        sid = _session_id(event)
        if sid is None or sid in ignored_ids:
            continue
        if event.type == "debug.start":
            starts.setdefault(sid, event.ts)  # events are in time order: the first seen is the earliest
        elif event.type == "debug.stop":
            stops.setdefault(sid, []).append(event.ts)
    sessions = []
    for sid, start in starts.items():
        cap = start + max_session
        candidates: list[tuple[datetime, int, EndReason]] = [(cap, 1, "max_length")]
        session_stops = stops.get(sid, [])
        index = bisect_left(session_stops, start)
        if index < len(session_stops):
            candidates.append((session_stops[index], 0, "stop"))
        # The first idle gap after the start ends the run of events the start belongs to.
        r = bisect_right(run_starts, start) - 1
        last = runs[r][1] if r >= 0 else start
        candidates.append((last, 2, "idle" if r + 1 < len(runs) else "open"))
        end, _, reason = min(candidates)
        sessions.append(DebugSession(sid, start, max(end, start), reason))
    sessions.sort(key=lambda s: (s.start, s.session_id))
    return sessions


def heartbeat_debug_runs(ordered: Sequence[NormalizedEvent], *, idle: timedelta) -> list[tuple[datetime, datetime]]:
    """[first, last] of each run of debugging heartbeats at most `idle` apart (a lone heartbeat has no length)."""
    runs: list[tuple[datetime, datetime]] = []
    first = last = None
    for event in ordered:
        if event.type != "editor.heartbeat" or event.payload.get("category") != DEBUGGING_CATEGORY:
            continue
        if last is not None and first is not None and event.ts - last <= idle:
            last = event.ts
            continue
        if first is not None and last is not None and last > first:
            runs.append((first, last))
        first = last = event.ts
    if first is not None and last is not None and last > first:
        runs.append((first, last))
    return runs


def debug_intervals(
    ordered: Sequence[NormalizedEvent], *, idle: timedelta, max_session: timedelta = MAX_DEBUG_SESSION,
    ignored_ids: frozenset[str] = frozenset(),
) -> list[tuple[datetime, datetime]]:
    """The wall-clock time covered by at least one debug session or heartbeat run, as disjoint sorted intervals."""
    spans = [(s.start, s.end) for s in debug_sessions(ordered, idle=idle, max_session=max_session,
                                                        ignored_ids=ignored_ids) if s.end > s.start]
    spans += heartbeat_debug_runs(ordered, idle=idle)
    spans.sort()
    merged: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged
