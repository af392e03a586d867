"""The sliding-window rules measured in SQL (models/sliding_windows.py) find exactly what the pure rules find.

Events are written straight into raw_events, past ingest's validation, so payloads the catalog would refuse are
covered too (bools, floats such as 1.0 and 2.5, negative numbers, strings, null, missing keys and payloads,
numbers written as 1e2, huge numbers), with schema 1.0 ai.completion events (an extra chars_inserted field
included), same-time ties, events exactly one window (and one microsecond either side) apart, quarantined events,
another developer's events and a session time zone other than UTC. Thresholds are low so episodes happen often.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg2.extras import execute_values
from sqlalchemy import text

from activity import danger
from activity.danger import DangerThresholds
from models import danger_detection
from models.db import Database, dbapi_cursor
from models.event_reader import developer_events
from models.sliding_windows import sliding_detections, sql_detections

DEVELOPER = "dev-sliding-prop"
OTHER_DEVELOPER = "dev-sliding-other"
JOB = danger_detection.JOB
BASE = datetime(2024, 3, 30, 23, 50, 7, 123456, tzinfo=UTC)  # not whole seconds: ISO strings carry microseconds
US = timedelta(microseconds=1)
PATTERNS = ("excessive_errors", "high_ai_dependency")
THRESHOLDS = [
    DangerThresholds(excessive_errors_window_minutes=5, excessive_errors_medium=3, excessive_errors_high=5,
                     ai_window_minutes=5, ai_min_chars=40, ai_medium=0.5, ai_high=0.8),
    DangerThresholds(excessive_errors_window_minutes=3, excessive_errors_medium=2, excessive_errors_high=4,
                     ai_window_minutes=7.5, ai_min_chars=1, ai_medium=0.7, ai_high=0.9),
    DangerThresholds(excessive_errors_window_minutes=2.5, excessive_errors_medium=1, excessive_errors_high=3,
                     ai_window_minutes=2, ai_min_chars=0, ai_medium=2 / 3, ai_high=0.75),
]

# JSON texts as stored (written as text, so jsonb keeps what a client could send: 1e2 is stored as 100, an int
# when read back; 1.0 and 2.5 stay floats; -0 is 0).
COUNTS = ["0", "1", "2", "3", "5", "17", "60", "-1", "-0", "true", "false", "null", "1.0", "2.5", "0.5", "-0.5",
          "-2.5", "99.99", "2.7", "39.9", "123456789.75", '"3"', "1e2", "[1]", "{}", "1000000000"]
HUGE = ["9007199254740991", "9007199254740992", "123456789012345678901234.5", "1e300"]
SMALL = st.integers(0, 90).map(str)
# Totals land on ai_min_chars (40, 1) now and then.
CHARS = st.one_of(SMALL, st.sampled_from(["1", "20", "40"]), st.sampled_from(COUNTS))
EXIT_CODES = ["1", "0", "-1", "2", "-0", "true", "false", "null", "1.0", "0.0", "-1.5", '"1"', "1e2",
              "9223372036854775807", "-9223372036854775808"]
SUCCESS = ["false", "true", "null", "0", '"false"', "1"]
FIELDS: dict[str, dict[str, st.SearchStrategy[str]]] = {
    "build.result": {"success": st.one_of(st.just("false"), st.sampled_from(SUCCESS)), "duration_ms": SMALL},
    "test.result": {"passed": SMALL, "failed": st.one_of(st.just("1"), st.sampled_from(COUNTS))},
    "terminal.command": {"exit_code": st.one_of(st.just("1"), st.sampled_from(EXIT_CODES))},
    "diagnostics.snapshot": {"errors": st.one_of(st.just("2"), st.sampled_from(COUNTS)), "warnings": SMALL},
    "file.edit": {"lines_added": SMALL, "chars_typed": CHARS},
    "ai.suggestion_accepted": {"chars_inserted": CHARS},
    "ai.chat_insert": {"chars_inserted": CHARS},
    "ai.completion": {"accepted": st.sampled_from(["true", "true", "false", "null", "1"]), "chars": CHARS,
                      "chars_inserted": CHARS},
    "file.save": {"file": st.just('"a.py"')},
}


@st.composite
def payloads(draw: st.DrawFn, type_: str, huge: bool) -> str | None:
    """The stored payload's JSON text (None: the event has no payload key)."""
    shape = draw(st.sampled_from(["object"] * 20 + ["null", "array", "string", "missing"]))
    if shape != "object":
        return {"null": "null", "array": '["chars_inserted", 5]', "string": '"x"', "missing": None}[shape]
    fields = []
    for key, values in FIELDS[type_].items():
        if draw(st.integers(0, 7)) == 0:
            continue  # a missing key
        value = draw(st.sampled_from(HUGE)) if huge and draw(st.integers(0, 3)) == 0 else draw(values)
        fields.append(f'"{key}": {value}')
    return "{" + ", ".join(fields) + "}"


@st.composite
def streams(draw: st.DrawFn) -> dict[str, Any]:
    th = draw(st.sampled_from(THRESHOLDS))
    windows = [danger.sliding_reach(p, th) for p in PATTERNS]
    huge = draw(st.integers(0, 7)) == 0  # rarely: sums past 2**53, where SQL hands over to the pure rule
    moment = BASE + timedelta(seconds=draw(st.integers(0, 600)))
    # Error and character events interleaved (simplest first: hypothesis starts from, and shrinks towards, those),
    # or one rule's events only, for long episodes.
    types = draw(st.sampled_from([
        ["terminal.command", "ai.chat_insert", "build.result", "file.edit", "test.result", "ai.completion",
         "diagnostics.snapshot", "ai.suggestion_accepted", "file.save"],
        ["terminal.command", "build.result", "test.result", "diagnostics.snapshot"],
        ["ai.chat_insert", "file.edit", "ai.completion", "ai.suggestion_accepted", "file.edit"],
    ]))
    rows: list[dict[str, Any]] = []
    for n in range(draw(st.integers(0, 60) | st.integers(15, 60))):
        step = draw(st.sampled_from(["short", "tie", "anchor", "long"]))
        if step == "tie":
            moment += draw(st.sampled_from([timedelta(0), US]))  # the same time, or the next microsecond
        elif step == "anchor" and rows:
            # One window (or a microsecond less or more) after an earlier event: on a window's edge.
            earlier = draw(st.sampled_from(rows[-8:]))["ts"]
            moment = max(moment, earlier + draw(st.sampled_from(windows)) + draw(st.sampled_from([0 * US, -US, US])))
        elif step == "long":
            moment += draw(st.sampled_from(windows)) + draw(st.sampled_from([0 * US, -US, US]))
        else:
            moment += draw(st.integers(0, 20_000_000)) * US
        type_ = draw(st.sampled_from(types))
        version = draw(st.sampled_from(["1.0", "1.0", "1.1", "1.3"] if type_ != "ai.completion" else ["1.0"] * 5
                                       + ["1.1"]))
        rows.append({"id": uuid.UUID(int=n + 1, version=4), "type": type_, "version": version, "ts": moment,
                     "payload": draw(payloads(type_, huge)),
                     "quarantine": draw(st.sampled_from([None] * 12 + ["detect_danger", "released", "aggregate"]))})
    zone = draw(st.sampled_from(["UTC", "UTC", "Europe/Berlin", "America/New_York"]))
    return {"th": th, "rows": rows, "zone": zone, "huge": huge}


def _insert(s: Any, developer_id: str, rows: list[dict[str, Any]]) -> None:
    """The rows as stored events of one batch of `developer_id` (and their quarantine records), as ingest would
    store them but without its validation."""
    batch_id = uuid.uuid4()
    with dbapi_cursor(s) as cur:
        cur.execute("INSERT INTO batches (developer_id, batch_id, correlation_id, content_hash, received_at, sent_at,"
                    " received, accepted, duplicates, rejected) VALUES (%s, %s, 'prop', 'x', %s, %s, %s, %s, 0, 0)",
                    (developer_id, str(batch_id), BASE, BASE, len(rows), len(rows)))
        if not rows:
            return
        values = []
        for seq, r in enumerate(rows):
            payload = "" if r["payload"] is None else f', "payload": {r["payload"]}'
            raw = f'{{"type": "{r["type"]}"{payload}}}'
            values.append((str(r["id"]), str(batch_id), developer_id, seq, r["type"], r["version"], r["ts"], 0,
                           r["ts"], BASE, raw))
        execute_values(cur, "INSERT INTO raw_events (event_id, batch_id, developer_id, seq, type, schema_version,"
                       " client_ts, client_utc_offset_minutes, corrected_ts, received_at, raw) VALUES %s", values,
                       template="(%s::uuid, %s::uuid, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)")
        quarantined = [(developer_id, str(r["id"]), str(batch_id), "aggregate" if r["quarantine"] == "aggregate"
                        else JOB, BASE if r["quarantine"] == "released" else None)
                       for r in rows if r["quarantine"]]
        if quarantined:
            execute_values(cur, "INSERT INTO quarantined_events (developer_id, event_id, batch_id, job, error,"
                           " released_at) VALUES %s", quarantined,
                           template="(%s, %s::uuid, %s::uuid, %s, 'prop', %s)")


def _store(s: Any, case: dict[str, Any]) -> None:
    s.execute(text(f"SET LOCAL TIME ZONE '{case['zone']}'"))
    _insert(s, DEVELOPER, case["rows"])
    # Another developer's events at the same times, all of them errors and AI insertions: must not count.
    _insert(s, OTHER_DEVELOPER, [{**r, "type": "ai.chat_insert" if i % 2 else "build.result",
                                  "payload": '{"chars_inserted": 50, "success": false}', "quarantine": None}
                                 for i, r in enumerate(case["rows"][::3])])


def _pure(s: Any, pattern: str, lo: datetime, hi: datetime, th: DangerThresholds) -> list[danger.Detection]:
    events = developer_events(s, DEVELOPER, since=lo, until=hi, job=JOB, types=danger.RULE_TYPES[pattern])
    return danger.RULES[pattern](events, th, None)


def _bounds(draw: st.DrawFn, rows: list[dict[str, Any]]) -> tuple[datetime, datetime]:
    if not rows:
        return BASE, BASE + timedelta(hours=1)
    times = [r["ts"] for r in rows]
    if draw(st.booleans()):
        return times[0] - timedelta(hours=1), times[-1] + timedelta(hours=1)
    lo = draw(st.sampled_from([times[0] - timedelta(hours=1), *times])) + draw(st.sampled_from([-US, 0 * US, US]))
    hi = draw(st.sampled_from([*times, times[-1] + timedelta(hours=1)])) + draw(st.sampled_from([-US, 0 * US, US]))
    return lo, max(lo, hi)


SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@SETTINGS
@given(case=streams(), data=st.data())
def test_sql_windows_equal_the_pure_rules(db: Database, case: dict[str, Any], data: st.DataObject) -> None:
    th = case["th"]
    with db.session() as s:
        try:
            _store(s, case)
            lo, hi = _bounds(data.draw, case["rows"])
            for pattern in PATTERNS:
                expected = _pure(s, pattern, lo, hi, th)
                measured = sql_detections(s, DEVELOPER, pattern, lo, hi, th, job=JOB)
                if measured is None:
                    # Only sums past float8's exact integers hand over to the pure rule.
                    assert case["huge"] and pattern == "high_ai_dependency"
                    event("handed over to the pure rule")
                else:
                    assert measured == expected, pattern
                assert sliding_detections(s, DEVELOPER, pattern, lo, hi, th, job=JOB) == expected, pattern
                event(f"{pattern}: {len(expected) if len(expected) < 3 else '3 or more'} episodes")
        finally:
            s.rollback()


def _old_sliding(s: Any, pattern: str, first: datetime, last: datetime, th: DangerThresholds,
                 cap: tuple[datetime, datetime], scopes: dict[str, tuple[datetime, datetime]]
                 ) -> list[danger.Detection]:
    """`danger_detection._sliding` as it was, reading every event into the pure rule (no stored alerts here)."""
    reach = danger.sliding_reach(pattern, th)
    lo, hi = max(cap[0], first - reach), min(cap[1], last + reach)
    step = 4 * reach
    while True:
        detections = _pure(s, pattern, lo, hi, th)
        earlier = lo > cap[0] and any(d.window_start < lo + reach for d in detections)
        later = hi < cap[1] and any(d.window_end > hi - reach for d in detections)
        if not earlier and not later:
            break
        lo = max(cap[0], lo - step) if earlier else lo
        hi = min(cap[1], hi + step) if later else hi
        step *= 2
    scopes[pattern] = (lo + reach if lo > cap[0] else lo, hi)
    return detections


@SETTINGS
@given(case=streams(), data=st.data())
def test_sliding_keeps_its_contract(db: Database, case: dict[str, Any], data: st.DataObject) -> None:
    """Around a batch's span, the job's `_sliding` returns the same detections and records the same scope as the
    read-everything version did, widening as far."""
    th = case["th"]
    with db.session() as s:
        try:
            _store(s, case)
            first, last = _bounds(data.draw, case["rows"])
            margin = data.draw(st.sampled_from([timedelta(minutes=3), timedelta(minutes=20), timedelta(hours=24)]))
            cap = (first - margin, last + margin)
            for pattern in PATTERNS:
                old: dict[str, tuple[datetime, datetime]] = {}
                new: dict[str, tuple[datetime, datetime]] = {}
                expected = _old_sliding(s, pattern, first, last, th, cap, old)
                assert danger_detection._sliding(s, DEVELOPER, pattern, first, last, th, cap, new) == expected
                assert new == old
        finally:
            s.rollback()


def test_sums_past_exact_floats_hand_over_to_the_pure_rule(db: Database) -> None:
    # A 1.0 completion's own chars_inserted field wins over its chars, and ingest does not bound an extra field.
    rows = [{"id": uuid.UUID(int=1, version=4), "type": "ai.completion", "version": "1.0", "ts": BASE,
             "payload": '{"accepted": true, "chars": 5, "chars_inserted": 9007199254740993}', "quarantine": None},
            {"id": uuid.UUID(int=2, version=4), "type": "file.edit", "version": "1.1", "ts": BASE + US,
             "payload": '{"chars_typed": 1}', "quarantine": None}]
    th = THRESHOLDS[0]
    with db.session() as s:
        try:
            _insert(s, DEVELOPER, rows)
            lo, hi = BASE - timedelta(hours=1), BASE + timedelta(hours=1)
            assert sql_detections(s, DEVELOPER, "high_ai_dependency", lo, hi, th, job=JOB) is None
            found = sliding_detections(s, DEVELOPER, "high_ai_dependency", lo, hi, th, job=JOB)
            assert found == _pure(s, "high_ai_dependency", lo, hi, th)
            assert [d.details["peak_ai_chars"] for d in found] == [9007199254740993]
        finally:
            s.rollback()


def test_payload_corners_match_python(db: Database) -> None:
    """The corners one by one: what counts as an error, and as AI or typed characters."""
    cases = [
        ("terminal.command", "1.1", '{"exit_code": 1.0}', False),
        ("terminal.command", "1.1", '{"exit_code": 1e2}', True),
        ("terminal.command", "1.1", '{"exit_code": -0}', False),
        ("terminal.command", "1.1", '{"exit_code": true}', False),
        ("terminal.command", "1.1", '{"exit_code": -3}', True),
        ("test.result", "1.1", '{"failed": 2.5}', False),
        ("test.result", "1.1", '{"failed": -1}', False),
        ("diagnostics.snapshot", "1.0", '{"errors": 1}', True),
        ("build.result", "1.1", '{"success": "false"}', False),
        ("build.result", "1.1", '{"success": false}', True),
        ("build.result", "1.1", "null", False),
        ("build.result", "1.1", "[false]", False),
    ]
    th = DangerThresholds(excessive_errors_medium=1, excessive_errors_high=2)
    with db.session() as s:
        try:
            for n, (type_, version, payload, is_error) in enumerate(cases):
                moment = BASE + timedelta(hours=n)
                _insert(s, DEVELOPER, [{"id": uuid.uuid4(), "type": type_, "version": version, "ts": moment,
                                        "payload": payload, "quarantine": None}])
                found = sql_detections(s, DEVELOPER, "excessive_errors", moment, moment, th, job=JOB)
                assert found == _pure(s, "excessive_errors", moment, moment, th)
                assert bool(found) is is_error, (type_, payload)
        finally:
            s.rollback()


def _rows(*events: tuple[str, timedelta, str]) -> list[dict[str, Any]]:
    return [{"id": uuid.uuid4(), "type": type_, "version": "1.1", "ts": BASE + at, "payload": payload,
             "quarantine": None} for type_, at, payload in events]


def test_edges_met_deterministically(db: Database) -> None:
    """Corners the property meets only now and then: peaks tied across windows (the earliest wins), a window
    total exactly at ai_min_chars, events exactly one window apart (the earlier one falls out)."""
    minute = timedelta(minutes=1)
    fail = '{"exit_code": 1}'
    errors = _rows(*[("terminal.command", k * minute, fail) for k in (0, 1, 2, 5, 6)])
    ai = _rows(("ai.chat_insert", 0 * minute, '{"chars_inserted": 30}'), ("file.edit", minute, '{"chars_typed": 10}'),
               ("ai.chat_insert", 5 * minute, '{"chars_inserted": 30}'),
               ("ai.chat_insert", 20 * minute, '{"chars_inserted": 20}'),
               ("ai.suggestion_accepted", 21 * minute, '{"chars_inserted": 20}'))
    th = THRESHOLDS[0]  # windows of 5 minutes, 3 errors, 40 characters at half AI
    with db.session() as s:
        try:
            _insert(s, DEVELOPER, errors + ai)
            lo, hi = BASE - timedelta(hours=1), BASE + timedelta(hours=1)
            found = {p: sql_detections(s, DEVELOPER, p, lo, hi, th, job=JOB) for p in PATTERNS}
            assert found == {p: _pure(s, p, lo, hi, th) for p in PATTERNS}
            (err,) = found["excessive_errors"]
            assert (err.details["peak_error_count"], err.details["episode_error_count"]) == (3, 5)
            assert err.details["peak_window_end"] == (BASE + 2 * minute).isoformat()
            first, second = found["high_ai_dependency"] or []
            assert first.details["peak_window_end"] == (BASE + minute).isoformat()
            assert first.window_end == BASE + 5 * minute
            assert second.details["peak_total_chars"] == 40
        finally:
            s.rollback()
