"""The two sliding-window danger rules (excessive_errors, high_ai_dependency) measured inside PostgreSQL.

Under sustained load a developer stays inside an episode for hours, and reading every event of it into Python
to run the pure rules on each batch was the workers' largest cost. Here one statement per rule computes, over the
developer's events of the rule's types in [lo, hi], what `activity.episodes.sliding_episodes` computes:

1. each event's measure, exactly as the pure rule sees it after upcasting (`_ERROR`, `_CHARS_JSON`, `_CHARS`);
2. per distinct event time t, the trailing window (t - window, t]: a RANGE frame of window - 1 microsecond
   PRECEDING (stored times are whole microseconds), whose CURRENT ROW takes every event at t, as the rule does;
3. the qualifying windows, merged into episodes by gaps and islands (a window starting after the previous
   qualifying window's end opens a new one), with each episode's peak window (the earliest on ties).

Only a row per episode comes back, graded by the pure rules' own functions (`activity.danger.grade_errors_episode`,
`grade_ai_episode`). tests/models/test_sliding_windows.py holds the result equal to the pure rules on the same
stored events, edge payloads included.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from activity import danger
from activity.danger import DangerThresholds, Detection, grade_ai_episode, grade_errors_episode
from models.db import run_sql
from models.event_reader import PROCESSABLE, developer_events

# The rule's stored events: `p` is the payload as stored (NULL, or not an object, reads as no field at all, as
# `event_reader.lean_event` reads it: every `->` below is then NULL).
_EVENTS = ("SELECT r.corrected_ts AS ts, {columns}"
           " FROM raw_events r CROSS JOIN LATERAL (SELECT r.raw->'payload' AS p) x"
           " WHERE r.developer_id = %(developer)s AND r.type = ANY(%(types)s)"
           " AND r.corrected_ts >= %(lo)s AND r.corrected_ts <= %(hi)s" + PROCESSABLE)

# `activity.metrics.is_error_event`. A JSON number is a Python int when read back (psycopg2's json.loads of
# PostgreSQL's jsonb output) iff its text has no '.': jsonb prints numbers in plain notation, so 1e2 comes back as
# 100 (an int) and 1.0 as 1.0 (a float, which is no count and no exit code). Strings, bools and null never match
# the digit patterns; a positive count is '[1-9][0-9]*', a non-zero int '-?[1-9][0-9]*' (jsonb prints -0 as 0).
_ERROR = """CASE r.type
  WHEN 'build.result' THEN p->'success' = 'false'::jsonb
  WHEN 'test.result' THEN (p->'failed')::text ~ '^[1-9][0-9]*$'
  WHEN 'terminal.command' THEN (p->'exit_code')::text ~ '^-?[1-9][0-9]*$'
  WHEN 'diagnostics.snapshot' THEN (p->'errors')::text ~ '^[1-9][0-9]*$'
  ELSE false END"""

# The JSON value the rule reads as characters after upcasting: a file.edit's chars_typed, an AI event's
# chars_inserted. A 1.0 ai.completion that was accepted becomes {"chars_inserted": chars (0 when absent), **other
# fields}: an extra "chars_inserted" field of its own wins (and, being no catalog field, is not bounded by ingest).
_CHARS_JSON = """CASE WHEN r.type = 'file.edit' THEN p->'chars_typed'
  WHEN r.type IN ('ai.suggestion_accepted', 'ai.chat_insert') THEN p->'chars_inserted'
  WHEN r.type = 'ai.completion' AND r.schema_version = '1.0' AND p->'accepted' = 'true'::jsonb
  THEN CASE WHEN jsonb_typeof(p) = 'object' AND p ? 'chars_inserted' THEN p->'chars_inserted' ELSE p->'chars' END
  END"""

# Exact in float8 below this: every count, sum and share is then what Python computes with ints.
_EXACT = 2**53

# max(int(num(value) or 0), 0): non-numbers count 0; a number is rounded to a double (psycopg2 reads "2.5" as a
# float; an int below 2**53 converts exactly) and truncated toward zero, as int() does, then kept >= 0. Values are
# clamped to 2**53 first so that no text overflows float8: from 2**53 on Python's arithmetic is no longer float8's,
# and the whole read is handed over to the pure rule (the last statement's first column).
_CHARS = ("CASE WHEN jsonb_typeof(j) IS DISTINCT FROM 'number' THEN 0"
          f" ELSE trunc(greatest(least(j::numeric, {_EXACT}), 0)::float8) END")


# Windows at every distinct time holding an item: `wfirst` is the time of the window's first item, `upto` the
# items up to and including the window's end (so `upto - n` those before it): a window holds `upto` minus the
# `upto - n` of its first row. Running sums (int8, float8 below 2**53) are exact and cost O(1) a row, where a moving
# sum would be numeric. The frame's length is given in microseconds: an interval with days would be subtracted in
# calendar days of the session's time zone (23 or 25 hours across a DST change).
_FRAME = "WINDOW w AS (ORDER BY ts RANGE BETWEEN %(reach_us)s * interval '1 microsecond' PRECEDING AND CURRENT ROW)"
_RUNNING = "OVER (ORDER BY ts ROWS UNBOUNDED PRECEDING)"
# Gaps and islands over the qualifying windows: one that starts after the previous one's end opens an episode.
_EPISODES = f"""qual AS (SELECT *, CASE WHEN wfirst <= lag(ts) OVER (ORDER BY ts) THEN 0 ELSE 1 END AS brk
         FROM win WHERE {{qualifies}}),
eps AS (SELECT *, sum(brk) {_RUNNING} AS ep FROM qual)"""

# The peak is the earliest window among the highest values (DISTINCT ON keeps the first row in its order). An
# episode holds max(upto) - min(upto - cnt) errors: ep.last - ep.first + 1 of the pure rule.
_ERRORS_SQL = f"""
WITH ev AS ({_EVENTS.format(columns="1 AS one")} AND ({_ERROR})),
items AS (SELECT ts, count(*)::int AS n FROM ev GROUP BY ts),
cum AS (SELECT ts, n, sum(n) {_RUNNING} AS upto FROM items),
win AS (SELECT ts, upto, first_value(ts) OVER w AS wfirst, upto - first_value(upto - n) OVER w AS cnt
        FROM cum {_FRAME}),
{_EPISODES.format(qualifies="cnt >= %(medium)s")},
peaks AS (SELECT DISTINCT ON (ep) ep, cnt, wfirst, ts FROM eps ORDER BY ep, cnt DESC, ts)
SELECT e.first, e.last, p.cnt, p.wfirst, p.ts, e.errors
FROM (SELECT ep, min(wfirst) AS first, max(ts) AS last, max(upto) - min(upto - cnt) AS errors
      FROM eps GROUP BY ep) e
JOIN peaks p USING (ep) ORDER BY e.first
"""

# The share is compared and maximized in float8 as Python computes it (`activity.danger.ai_share`): with both
# sums exact (below 2**53) float8 division gives the same correctly rounded quotient. The first column says whether
# they are: every window's sums are at most the sum over all items. A window holds its own end's item, so its total
# is > 0 (the rule's `total == 0` never happens; nullif only guards the inexact case from dividing by zero).
_AI_SQL = f"""
WITH ev AS MATERIALIZED ({_EVENTS.format(columns=f"r.type = 'file.edit' AS typed, {_CHARS_JSON} AS j")}),
chars AS (SELECT ts, typed, {_CHARS} AS v FROM ev),
items AS (SELECT ts, coalesce(sum(v) FILTER (WHERE NOT typed), 0) AS ai, coalesce(sum(v) FILTER (WHERE typed), 0) AS ty
          FROM chars WHERE v > 0 GROUP BY ts),
cum AS (SELECT ts, ai, ty, sum(ai) {_RUNNING} AS ai_upto, sum(ty) {_RUNNING} AS ty_upto FROM items),
win AS (SELECT ts, first_value(ts) OVER w AS wfirst, ai_upto - first_value(ai_upto - ai) OVER w AS ai,
               ty_upto - first_value(ty_upto - ty) OVER w AS ty FROM cum {_FRAME}),
{_EPISODES.format(qualifies="ai + ty >= %(min_chars)s AND ai / nullif(ai + ty, 0) >= %(medium)s::float8")},
peaks AS (SELECT DISTINCT ON (ep) ep, ai, ty, wfirst, ts FROM eps ORDER BY ep, ai / (ai + ty) DESC, ts)
SELECT (SELECT coalesce(max(ai_upto + ty_upto), 0) < {_EXACT} FROM cum), e.first, e.last, p.ai, p.ty, p.wfirst, p.ts
FROM (SELECT 1) one
LEFT JOIN ((SELECT ep, min(wfirst) AS first, max(ts) AS last FROM eps GROUP BY ep) e JOIN peaks p USING (ep)) ON true
ORDER BY e.first
"""


def _utc(moment: datetime) -> datetime:
    # ISO strings in the details and episode keys are UTC, as `activity.events.prepare` makes the times.
    return moment.astimezone(UTC)


def sql_detections(session: Session, developer_id: str, pattern: str, lo: datetime, hi: datetime,
                   th: DangerThresholds, *, job: str) -> list[Detection] | None:
    """The pure rule `pattern`'s detections over the developer's events in [lo, hi], measured in SQL; None when
    SQL cannot reproduce them exactly (characters summing to 2**53 or more, a window under one microsecond)."""
    window = danger.sliding_reach(pattern, th)
    if window < timedelta(microseconds=1):
        return None
    params = {"developer": developer_id, "types": sorted(danger.RULE_TYPES[pattern]), "lo": lo, "hi": hi,
              "job": job, "reach_us": window // timedelta(microseconds=1) - 1}
    if pattern == "excessive_errors":
        rows = run_sql(session, _ERRORS_SQL, {**params, "medium": th.excessive_errors_medium})
        return [grade_errors_episode((_utc(first), _utc(last)), int(peak), (_utc(p_lo), _utc(p_hi)), int(errors), th)
                for first, last, peak, p_lo, p_hi, errors in rows]
    rows = run_sql(session, _AI_SQL, {**params, "min_chars": th.ai_min_chars, "medium": th.ai_medium})
    if not rows[0][0]:
        return None
    return [grade_ai_episode((_utc(first), _utc(last)), (_utc(p_lo), _utc(p_hi)), int(ai), int(typed), th)
            for _, first, last, ai, typed, p_lo, p_hi in rows if first is not None]


def sliding_detections(session: Session, developer_id: str, pattern: str, lo: datetime, hi: datetime,
                       th: DangerThresholds, *, job: str) -> list[Detection]:
    """What the pure rule `pattern` finds in the developer's stored events in [lo, hi]: measured in SQL, or,
    in the rare case SQL cannot be exact, by the pure rule over the events read."""
    found = sql_detections(session, developer_id, pattern, lo, hi, th, job=job)
    if found is not None:
        return found
    events = developer_events(session, developer_id, since=lo, until=hi, job=job, types=danger.RULE_TYPES[pattern])
    return danger.RULES[pattern](events, th, None)
