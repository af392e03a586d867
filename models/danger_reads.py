"""What the danger rules need to know around a batch, read at a cost that does not grow with the history.

The two rules that measure stretches of time rather than events (no_break: runs of events without a break;
late_night_work: active time inside a night) need only event times, over spans that can last hours. Their
measures are computed here in SQL, inside PostgreSQL, and graded by the pure rules' own functions
(`activity.danger.grade_no_break`, `grade_late_night`); a property test (tests/models/test_danger_reads.py)
holds them equal to the pure rules on the same events. The two sliding-window rules are measured in SQL as well
(models/sliding_windows.py); extended debugging gets its debug events from `event_reader.developer_events`, over
reads sized per rule (models/danger_detection.py).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import Session

from activity.danger import DangerThresholds, Detection, grade_late_night, grade_no_break, night_bounds
from models.db import run_sql
from models.event_reader import PROCESSABLE

_EVENTS = ("SELECT r.corrected_ts AS ts, r.received_at, r.seq, r.event_id, r.client_utc_offset_minutes AS off"
           " FROM raw_events r WHERE r.developer_id = %(developer)s"
           " AND r.corrected_ts >= %(lo)s AND r.corrected_ts <= %(hi)s" + PROCESSABLE)

# Gaps and islands: a run starts at every event more than `gap` after the one before it.
_RUNS = f"""
WITH ev AS ({_EVENTS}),
marked AS (SELECT ts, CASE WHEN ts - lag(ts) OVER (ORDER BY ts) <= %(gap)s THEN 0 ELSE 1 END AS brk FROM ev),
numbered AS (SELECT ts, sum(brk) OVER (ORDER BY ts ROWS UNBOUNDED PRECEDING) AS run FROM marked)
SELECT min(ts), max(ts), count(*) FROM numbered GROUP BY run
HAVING max(ts) >= %(touch_lo)s AND min(ts) <= %(touch_hi)s ORDER BY 1
"""


def no_break_runs(session: Session, developer_id: str, *, first: datetime, last: datetime, lo: datetime,
                  hi: datetime, th: DangerThresholds, job: str) -> tuple[list[Detection], tuple[datetime, datetime]]:
    """The no-break detections of the runs (of the events in [lo, hi]) that events in [first, last] belong to
    or could join, and the span those runs cover (every no-break episode inside it was re-derived)."""
    gap = timedelta(minutes=th.no_break_gap_minutes)
    rows = run_sql(session, _RUNS, {"developer": developer_id, "lo": lo, "hi": hi, "job": job, "gap": gap,
                                      "touch_lo": first - gap, "touch_hi": last + gap})
    found = [d for start, end, count in rows if (d := grade_no_break(start, end, int(count), th)) is not None]
    span = (min([first, *(r[0] for r in rows)]), max([last, *(r[1] for r in rows)]))
    return found, span


def activity_runs(session: Session, developer_id: str, lo: datetime, hi: datetime, *, gap: timedelta,
                  job: str) -> list[tuple[datetime, datetime]]:
    """`activity.sessions.activity_runs` of the developer's events in [lo, hi], computed in SQL."""
    rows = run_sql(session, _RUNS, {"developer": developer_id, "lo": lo, "hi": hi, "job": job, "gap": gap,
                                      "touch_lo": lo - gap, "touch_hi": hi + gap})
    return [(start.astimezone(UTC), end.astimezone(UTC)) for start, end, _ in rows]


# Each gap of at most the idle timeout, placed in local time by its EARLIER event (the zone's offset at that
# instant, or the event's own offset), clipped to the night; in time order (ties as activity.events.order_key).
_NIGHT = f"""
WITH ev AS ({_EVENTS}),
gaps AS (
  SELECT ts AS a, lead(ts) OVER w - ts AS gap,
         CASE WHEN %(zone)s::text IS NULL THEN (ts AT TIME ZONE 'UTC') + off * interval '1 minute'
              ELSE ts AT TIME ZONE %(zone)s::text END AS local_a
  FROM ev WINDOW w AS (ORDER BY ts, received_at, seq, event_id::text)
),
clipped AS (
  SELECT a, local_a, greatest(local_a, %(night_start)s) AS lo, least(local_a + gap, %(night_end)s) AS hi
  FROM gaps WHERE gap > interval '0' AND gap <= %(idle)s
)
SELECT sum(hi - lo), (array_agg(lo ORDER BY a))[1], (array_agg(lo - local_a + a ORDER BY a))[1],
       (array_agg(hi ORDER BY a DESC))[1], (array_agg(hi - local_a + a ORDER BY a DESC))[1]
FROM clipped WHERE lo < hi
"""


def late_night(session: Session, developer_id: str, nights: list[date], *, th: DangerThresholds,
               zone: str | None, offsets: tuple[int, int], job: str
               ) -> tuple[list[Detection], tuple[datetime, datetime] | None]:
    """The late-night detections of these nights (local dates), and the UTC span they were measured over.

    `offsets` (minutes): the least and greatest UTC offset the developer's events of these nights can carry
    (their own, or the zone's); events are read for the nights' local windows under either.
    """
    idle = timedelta(seconds=th.idle_timeout_seconds)
    found: list[Detection] = []
    spans: list[tuple[datetime, datetime]] = []
    for day in nights:
        start, end = night_bounds(day, th)
        lo = (start - timedelta(minutes=offsets[1])).replace(tzinfo=UTC) - idle
        hi = (end - timedelta(minutes=offsets[0])).replace(tzinfo=UTC) + idle
        spans.append((lo, hi))
        row = run_sql(session, _NIGHT, {"developer": developer_id, "lo": lo, "hi": hi, "job": job,
                                          "zone": zone, "night_start": start, "night_end": end, "idle": idle})[0]
        if row[0] is None:
            continue
        first, last = (row[2].astimezone(UTC), row[1]), (row[4].astimezone(UTC), row[3])
        detection = grade_late_night(day, row[0], first, last, th)
        if detection is not None:
            found.append(detection)
    return found, ((min(s[0] for s in spans), max(s[1] for s in spans)) if spans else None)


_OFFSETS = ("SELECT min(r.client_utc_offset_minutes), max(r.client_utc_offset_minutes) FROM raw_events r"
            " WHERE r.developer_id = %(developer)s AND r.corrected_ts >= %(lo)s AND r.corrected_ts <= %(hi)s")


def offsets_between(session: Session, developer_id: str, lo: datetime, hi: datetime) -> tuple[int, int] | None:
    """The least and greatest UTC offset (minutes) the developer's events in [lo, hi] carry."""
    row = run_sql(session, _OFFSETS, {"developer": developer_id, "lo": lo, "hi": hi})[0]
    return None if row[0] is None else (int(row[0]), int(row[1]))
