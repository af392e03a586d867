"""Aggregation job: recompute the metric slots (and activity breakdowns) that new events can change.

Never incremented: the slots of a bounded range are deleted and rebuilt from every stored event that can
affect them, under a per-developer advisory lock, so duplicates, retries, replays and out-of-order batches
all converge on what a single in-order pass would give. The range depends on the new events' times only,
never on the developer's history (see `affected_range`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from activity.metrics import SLOT_COLUMNS, compute_slots, slot_ceil, slot_floor
from activity.sessions import MAX_DEBUG_SESSION, still_running
from models.bulk import insert_values
from models.coalescing import covered_by, mark_covered, merge_spans, waiting_batches
from models.event_reader import debug_marks, developer_events, sessions_started_before
from models.tables import ActivityBreakdown, Batch, MetricSlot

JOB = "aggregate"


def lock_developer(session: Session, scope: str, developer_id: str) -> None:
    """Serialize recomputations of one developer's derived rows (released at commit)."""
    session.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(f"{scope}:{developer_id}", 0))))


@dataclass(frozen=True)
class SlotRange:
    since: datetime  # slot-aligned, inclusive
    until: datetime  # slot-aligned, exclusive
    # The stored events read as context: [read_from, read_until] covers the range, the idle timeout around
    # it, and every debug session that can reach into it.
    read_from: datetime
    read_until: datetime

    @classmethod
    def with_context(cls, since: datetime, until: datetime, context: timedelta) -> SlotRange:
        return cls(since, until, since - context, until + context)

    def merge(self, other: SlotRange) -> SlotRange:
        return SlotRange(min(self.since, other.since), max(self.until, other.until),
                         min(self.read_from, other.read_from), max(self.read_until, other.read_until))


def affected_range(session: Session, developer_id: str, first_ts: datetime, last_ts: datetime, *,
                   idle: timedelta, max_debug: timedelta = MAX_DEBUG_SESSION) -> SlotRange:
    """The slots that events in [first_ts, last_ts] can change, and the events to read for them.

    A new event changes its own slot, the active gaps within `idle` of it, and the debug sessions it can
    lengthen or end: those that start from `idle` before it on (each lasts at most `max_debug`), and those
    that started earlier and were still running `idle` before it (no debug.stop of theirs in between). A
    session closed by its stop before that cannot change, so the read reaches back only to the earliest
    session still running, never to history: minutes in the usual case, `max_debug` at most (an abandoned
    session).
    """
    since, until = slot_floor(first_ts - idle), slot_ceil(last_ts + idle)
    settled = since - idle
    starts, stops = debug_marks(session, developer_id, since - max_debug, until, job=JOB)
    running = still_running(starts, stops, settled)
    later = any(settled <= ts for ts in starts.values())
    if not running and not later:
        return SlotRange.with_context(since, until, idle)
    read_from = min([since - idle, *running])
    # A session that runs into the range may last up to max_debug from its start: its slots up to there change.
    extended_until = slot_ceil(until + max_debug)
    return SlotRange(since, extended_until, read_from, extended_until + idle)


def recompute_slots(session: Session, developer_id: str, rng: SlotRange, *, idle_timeout_seconds: int,
                    max_debug: timedelta = MAX_DEBUG_SESSION) -> int:
    """Rebuild the developer's slots and breakdowns in [rng.since, rng.until) from the stored events."""
    read_from, read_until = rng.read_from, rng.read_until
    events = developer_events(session, developer_id, since=read_from, until=read_until, job=JOB)
    started_ids = {e.payload["debug_session_id"] for e in events
                   if e.type == "debug.start" and isinstance(e.payload.get("debug_session_id"), str)}
    ignored = sessions_started_before(session, developer_id, started_ids, read_from)
    result = compute_slots(events, since=rng.since, until=rng.until, idle_timeout_seconds=idle_timeout_seconds,
                           max_debug_session=max_debug, ignored_session_ids=ignored)
    for table in (MetricSlot, ActivityBreakdown):
        session.execute(delete(table).where(table.developer_id == developer_id, table.slot_start >= rng.since,
                                            table.slot_start < rng.until))
    insert_values(session, "metric_slots", ("developer_id", "slot_start", *SLOT_COLUMNS),
                  [(developer_id, m.slot_start, *(getattr(m, c) for c in SLOT_COLUMNS)) for m in result.metrics])
    insert_values(session, "activity_breakdowns", ("developer_id", "slot_start", "dimension", "key", "active_us"),
                  [(developer_id, b.slot_start, b.dimension, b.key, b.active_us) for b in result.breakdowns])
    return len(result.metrics)


def aggregate_batch(session: Session, batch: Batch, *, idle_timeout_seconds: int,
                    max_debug: timedelta = MAX_DEBUG_SESSION, is_replay: bool = False) -> dict[str, Any]:
    """Recompute the slots this batch can change, and those of the developer's other batches waiting for
    aggregation (one run covers them all: see models/coalescing.py); a covered batch has nothing left to do."""
    if batch.first_ts is None or batch.last_ts is None:
        return {"slots": 0}
    lock_developer(session, "metrics", batch.developer_id)
    if not is_replay and (by := covered_by(session, batch, JOB)) is not None:
        return {"slots": 0, "covered_by": str(by)}
    others = [] if is_replay else waiting_batches(session, batch, JOB)
    idle = timedelta(seconds=idle_timeout_seconds)
    # Batches whose events lie within the idle timeout of each other change overlapping slots: one range (and
    # one read of debug marks) per such group rather than per batch. A group's span holds no more than its
    # batches' own times and the gaps of at most `idle` between them, so the range stays as bounded.
    spans = merge_spans([(b.first_ts - idle, b.last_ts + idle) for b in (batch, *others)
                         if b.first_ts is not None and b.last_ts is not None])
    ranges = [affected_range(session, batch.developer_id, lo + idle, hi - idle, idle=idle, max_debug=max_debug)
              for lo, hi in spans]
    slots = 0
    for since, until in merge_spans([(r.since, r.until) for r in ranges]):
        # Overlapping ranges merge into one, reading the context of all of them.
        merged = [r for r in ranges if r.since < until and since < r.until]
        rng = merged[0]
        for other in merged[1:]:
            rng = rng.merge(other)
        slots += recompute_slots(session, batch.developer_id, rng, idle_timeout_seconds=idle_timeout_seconds,
                                 max_debug=max_debug)
    mark_covered(session, others, JOB, by=batch)
    return {"slots": slots, **({"covered": len(others)} if others else {})}
