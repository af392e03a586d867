"""Danger detection reads per rule (models/danger_detection.py, models/danger_reads.py) and still gives what one
pass of the pure rules over every stored event gives.

The detection job no longer reads +-24 h of events for every batch: each rule reads only as far as its episodes
can reach, and no_break / late-night are measured in SQL. Two properties hold that to the pure definition:
- the SQL measures equal the pure rules on the same stored events (any gaps, offsets, zone);
- batches stored and detected one by one, in any order, leave exactly the alerts (pattern, episode, severity,
  window, figures, escalation) that `activity.danger.detect` finds over all the events at once.
Thresholds are lowered so that every pattern fires in small streams.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from activity import danger
from activity.danger import DangerThresholds
from models.danger_detection import detect_for_batch
from models.danger_reads import late_night, no_break_runs
from models.db import Database
from models.event_reader import developer_events
from models.tables import Alert
from tests.support.database import truncate_all
from tests.support.factories import batch
from tests.support.pipeline import persist_body, stored_batch

DEVELOPER = "dev-danger-prop"
NOW = datetime.now(UTC).replace(microsecond=0)
# Two to three days back (inside ingest's 30-day limit), starting late in the UTC evening: streams cross nights.
BASE = (NOW - timedelta(days=3)).replace(hour=21, minute=0, second=0)
TH = DangerThresholds(
    excessive_errors_medium=3, excessive_errors_high=5, excessive_errors_window_minutes=15,
    extended_debugging_medium_minutes=10, extended_debugging_high_minutes=25,
    ai_window_minutes=30, ai_min_chars=40, ai_medium=0.5, ai_high=0.8,
    no_break_gap_minutes=10, no_break_medium_hours=0.5, no_break_high_hours=1.0,
    late_night_low_minutes=5, late_night_medium_minutes=20, idle_timeout_seconds=300,
)

ERRORS = {
    "build.result": st.fixed_dictionaries({"success": st.booleans()}),
    "test.result": st.fixed_dictionaries({"passed": st.integers(0, 5), "failed": st.integers(0, 2)}),
    "terminal.command": st.fixed_dictionaries({"exit_code": st.integers(0, 2)}),
    "diagnostics.snapshot": st.fixed_dictionaries({"errors": st.integers(0, 2), "warnings": st.integers(0, 2)}),
}
OTHER = {
    "file.edit": st.fixed_dictionaries({"file": st.just("a.py"), "lines_added": st.integers(0, 5),
                                        "lines_deleted": st.integers(0, 5), "chars_typed": st.integers(0, 60)}),
    "file.save": st.fixed_dictionaries({"file": st.just("a.py")}),
    "ai.suggestion_accepted": st.fixed_dictionaries({"chars_inserted": st.integers(0, 80)}),
}
PAYLOADS = {**ERRORS, **OTHER}


def _ts(moment: datetime, offset_minutes: int) -> str:
    return moment.astimezone(timezone(timedelta(minutes=offset_minutes))).isoformat()


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """(events, batches as lists of event indexes in arrival order)."""
    offset_minutes = draw(st.sampled_from([0, 0, 60, -300, 330]))
    events: list[dict[str, Any]] = []
    moment = BASE + timedelta(minutes=draw(st.integers(0, 300)))
    debug_open: str | None = None
    for n in range(draw(st.integers(5, 70))):
        # Mostly short gaps (episodes need dense stretches), and gaps around the idle timeout, the no-break
        # gap and well beyond.
        kind = draw(st.sampled_from(("short", "short", "short", "short", "idle", "break", "long")))
        low, high = {"short": (0, 150), "idle": (250, 350), "break": (550, 650), "long": (700, 3000)}[kind]
        moment += timedelta(seconds=draw(st.integers(low, high)))
        if moment > NOW - timedelta(hours=2):
            break
        if draw(st.integers(0, 6)) == 0:
            type_ = "debug.stop" if debug_open else "debug.start"
            sid = debug_open or f"dbg-{n}"
            debug_open = None if debug_open else sid
            payload: dict[str, Any] = {"debug_session_id": sid}
        else:
            type_ = draw(st.sampled_from(sorted(PAYLOADS)))
            payload = draw(PAYLOADS[type_])
        if draw(st.integers(0, 15)) == 0:
            offset_minutes = draw(st.sampled_from([0, 60, -300]))
        events.append({"event_id": str(uuid.UUID(int=n + 1, version=4)), "type": type_,
                       "timestamp": _ts(moment, offset_minutes), "payload": payload})
    order = draw(st.permutations(range(len(events))))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(events) - 1)), max_size=4))) if len(events) > 1 else []
    bounds = [0, *cuts, len(events)]
    batches = [list(order[a:b]) for a, b in itertools.pairwise(bounds) if order[a:b]]
    return events, batches


def _store(db: Database, events: list[dict[str, Any]], members: list[int], index: int) -> uuid.UUID:
    batch_id = uuid.UUID(int=index + 1000, version=4)
    body = batch([events[i] for i in members], developer_id=DEVELOPER, batch_id=str(batch_id), sent_at=NOW)
    outcome = persist_body(db, body, received_at=NOW)
    assert outcome.kind == "stored", outcome.kind
    return batch_id


def _alerts(db: Database) -> dict[tuple[str, str], tuple[Any, ...]]:
    with db.session() as s:
        rows = s.scalars(select(Alert).where(Alert.developer_id == DEVELOPER, Alert.status != "withdrawn")).all()
        return {(a.pattern, a.episode_key): (a.severity, a.window_start.astimezone(UTC), a.window_end.astimezone(UTC),
                                             a.details, a.recommendation) for a in rows}


def _expected(db: Database, zone: str | None) -> dict[tuple[str, str], tuple[Any, ...]]:
    import json

    with db.session() as s:
        events = developer_events(s, DEVELOPER, payload_types=danger.PAYLOAD_TYPES)
    found, errors = danger.detect(events, TH, ZoneInfo(zone) if zone else None)
    assert not errors
    return {(d.pattern, d.episode_key): (d.severity, d.window_start, d.window_end,
                                         json.loads(json.dumps(d.details, default=str)), d.recommendation)
            for d in found}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(case=streams(), zone=st.sampled_from([None, None, "Europe/Berlin", "America/New_York"]))
def test_sql_measures_equal_the_pure_rules(db, case, zone):
    events, batches = case
    truncate_all(db)
    for index, members in enumerate(batches):
        _store(db, events, members, index)
    with db.transaction() as s:
        stored = developer_events(s, DEVELOPER)
        if not stored:
            return
        lo, hi = stored[0].ts - timedelta(days=1), stored[-1].ts + timedelta(days=1)
        runs, _ = no_break_runs(s, DEVELOPER, first=lo, last=hi, lo=lo, hi=hi, th=TH, job="detect_danger")
        assert runs == danger.detect_no_break(stored, TH)
        tz = ZoneInfo(zone) if zone else None
        expected = danger.detect_late_night_work(stored, TH, tz)
        nights = sorted({datetime.fromisoformat(d.episode_key).date() for d in expected}
                        | set(danger.nights_touching(lo.replace(tzinfo=None), hi.replace(tzinfo=None), TH)))
        offsets = (-300, 330) if zone is None else (-300, 120)
        measured, _ = late_night(s, DEVELOPER, nights, th=TH, zone=zone, offsets=offsets, job="detect_danger")
        assert measured == expected


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(case=streams(), zone=st.sampled_from([None, None, "Europe/Berlin"]))
def test_detection_batch_by_batch_equals_one_pass(db, case, zone):
    events, batches = case
    truncate_all(db)
    for index, members in enumerate(batches):
        batch_id = _store(db, events, members, index)
        with db.transaction() as s:
            stored = stored_batch(s, batch_id, DEVELOPER)
            result = detect_for_batch(s, stored, correlation_id="prop", thresholds=TH,
                                      freshness=timedelta(hours=1), timezone=zone, is_replay=True)
            assert "error" not in result, result
    expected = _expected(db, zone)
    event(f"patterns: {sorted({p for p, _ in expected})}")
    assert _alerts(db) == expected
