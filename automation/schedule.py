"""When a schedule trigger fires next: `next_fire(cron, timezone, after) -> datetime` (aware, UTC).

The cron expression (five fields, croniter) is read in the LOCAL wall-clock time of `timezone`. Wall-clock
times are walked one by one and each is turned into an instant:
- a local time skipped by a DST change (e.g. 02:30 on the spring-forward night in Europe/Berlin) fires at
  the instant that wall time would be with the offset before the change, i.e. as far after the jump as the
  time was after the start of the gap (02:30 -> 03:30 CEST): a daily job is never silently lost;
- a local time that happens twice (the fall-back hour) fires once, at its FIRST occurrence; a job every
  15 minutes therefore does not run during the repeated hour's second pass.
Instants are strictly increasing: the result is always later than `after`. Two beats computing the same
instant is what makes "at most one execution per instant" enforceable by a unique key on (workflow, instant).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import CroniterBadDateError, croniter

# A cron that matches nothing for this long (e.g. "0 0 30 2 *") has no next time.
MAX_SEARCH = timedelta(days=366 * 5)


def local_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The instant of naive local `wall` time: first occurrence if repeated, shifted past a gap if skipped."""
    first = wall.replace(tzinfo=zone, fold=0)
    return first.astimezone(UTC)


def next_fire(cron: str, timezone: str, after: datetime) -> datetime | None:
    """The first firing instant strictly after `after` (aware), in UTC; None if there is none within 5 years."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    zone = ZoneInfo(timezone)
    # Start one hour of wall time early: after a fall-back, the wall clock re-reads times it has already shown.
    wall = after.astimezone(zone).replace(tzinfo=None) - timedelta(hours=1)
    iterator = croniter(cron, wall)
    limit = after + MAX_SEARCH
    while True:
        try:
            candidate: datetime = iterator.get_next(datetime)
        except CroniterBadDateError:  # croniter gives up on dates that never come (Feb 30)
            return None
        instant = local_instant(candidate, zone)
        if instant > after:
            return instant
        if instant > limit:
            return None
