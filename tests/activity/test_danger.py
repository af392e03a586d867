"""Danger patterns: thresholds at their exact edges, episode keys, critical
escalation, ordering, and determinism under reordering and redelivery."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activity.danger import (
    RULES,
    SEVERITY_ORDER,
    DangerThresholds,
    Detection,
    detect,
    detect_excessive_errors,
    detect_extended_debugging,
    detect_high_ai_dependency,
    detect_late_night_work,
    detect_no_break,
    escalate_critical,
    prioritize,
    severity_rank,
)
from activity.events import NormalizedEvent

T0 = datetime(2024, 5, 6, 9, 0, tzinfo=UTC)  # a Monday morning, far from any local night at offset 0
SEC = timedelta(seconds=1)
MIN = timedelta(minutes=1)


def detections(*args):
    """detect() when no rule fails (the rule-isolation tests call detect() itself)."""
    found, errors = detect(*args)
    assert errors == {}
    return found


def ev(eid: str, type_: str, at: datetime, offset: int = 0, **payload: Any) -> NormalizedEvent:
    return NormalizedEvent(event_id=eid, type=type_, ts=at, payload=payload, utc_offset_minutes=offset)


def spread(n: int, start: datetime, span: timedelta) -> list[datetime]:
    """n instants, the first at `start` and the last exactly at `start + span`."""
    if n == 1:
        return [start]
    return [start + span * i / (n - 1) for i in range(n)]


def failing_commands(
    n: int, start: datetime = T0, span: timedelta = 14 * MIN + 59 * SEC, tag: str = "err"
) -> list[NormalizedEvent]:
    return [ev(f"{tag}{i:03d}", "terminal.command", t, exit_code=1) for i, t in enumerate(spread(n, start, span))]


def ticks(start: datetime, end: datetime, step: timedelta, tag: str, offset: int = 0) -> list[NormalizedEvent]:
    """Activity (zero-character edits) from start to end inclusive, every `step`."""
    out, t, i = [], start, 0
    while t <= end:
        out.append(ev(f"{tag}{i:05d}", "file.edit", t, offset, chars_typed=0))
        t, i = t + step, i + 1
    if out[-1].ts != end:
        out.append(ev(f"{tag}{i:05d}", "file.edit", end, offset, chars_typed=0))
    return out


def only(detections: list[Detection]) -> Detection:
    assert len(detections) == 1, detections
    return detections[0]


# --- excessive_errors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "payload", "is_error"),
    [
        ("build.result", {"success": False}, True),
        ("build.result", {"success": True}, False),
        ("test.result", {"failed": 2, "passed": 10}, True),
        ("test.result", {"failed": 0, "passed": 10}, False),
        ("terminal.command", {"exit_code": 127}, True),
        ("terminal.command", {"exit_code": 0}, False),
        ("terminal.command", {}, False),
        ("diagnostics.snapshot", {"errors": 1, "warnings": 0}, True),
        ("diagnostics.snapshot", {"errors": 0, "warnings": 9}, False),
        ("file.edit", {"chars_typed": 5}, False),
    ],
)
def test_which_events_count_as_errors(type_: str, payload: dict[str, Any], is_error: bool) -> None:
    events = [ev(f"x{i}", type_, t, **payload) for i, t in enumerate(spread(20, T0, 5 * MIN))]
    assert bool(detect_excessive_errors(events)) is is_error


@pytest.mark.parametrize(("n", "severity"), [(19, None), (20, "medium"), (39, "medium"), (40, "high")])
def test_error_count_thresholds(n: int, severity: str | None) -> None:
    found = detect_excessive_errors(failing_commands(n))
    if severity is None:
        assert found == []
    else:
        d = only(found)
        assert (d.severity, d.details["peak_error_count"]) == (severity, n)
        assert d.details["excessive_errors_medium"] == 20 and d.details["excessive_errors_high"] == 40


def test_the_fifteen_minute_window_is_half_open() -> None:
    assert detect_excessive_errors(failing_commands(20, span=15 * MIN)) == []
    assert only(detect_excessive_errors(failing_commands(20, span=15 * MIN - SEC))).severity == "medium"


def test_error_episode_reports_the_peak_and_its_extent() -> None:
    # 20 errors in 10 minutes, then a trickle keeping windows qualifying, then 40 in 5 minutes.
    burst = failing_commands(20, T0, 10 * MIN, "a")
    peak = failing_commands(40, T0 + 12 * MIN, 5 * MIN, "b")
    d = only(detect_excessive_errors(burst + peak))
    assert d.severity == "high"
    # The peak window ends with the last error (T0+17 min) and reaches back to just after T0+2 min:
    # all 40 of the second burst plus the 16 of the first one spaced 10/19 min apart after T0+2 min.
    assert d.details["peak_error_count"] == 56
    assert (d.window_start, d.window_end) == (T0, T0 + 17 * MIN)
    assert d.details["episode_error_count"] == 60
    assert d.episode_key == T0.isoformat()


def test_on_a_tie_the_earliest_window_is_the_peak() -> None:
    # One error a minute for 40 minutes: every 15-minute window holds exactly 15.
    th = DangerThresholds(excessive_errors_medium=15, excessive_errors_high=30)
    d = only(detect_excessive_errors(failing_commands(40, T0, 39 * MIN), th))
    assert d.details["peak_error_count"] == 15
    assert (d.details["peak_window_start"], d.details["peak_window_end"]) == (
        T0.isoformat(),
        (T0 + 14 * MIN).isoformat(),
    )
    assert (d.window_start, d.window_end) == (T0, T0 + 39 * MIN)


def test_separate_error_bursts_are_separate_episodes() -> None:
    first = failing_commands(20, T0, 5 * MIN, "a")
    second = failing_commands(25, T0 + 40 * MIN, 5 * MIN, "b")
    found = detect_excessive_errors(first + second)
    assert [d.episode_key for d in found] == [T0.isoformat(), (T0 + 40 * MIN).isoformat()]


def test_error_episode_extended_by_a_later_batch_keeps_its_key_and_escalates() -> None:
    first_batch = failing_commands(25, T0, 10 * MIN, "a")
    before = only(detect_excessive_errors(first_batch))
    after = only(detect_excessive_errors(first_batch + failing_commands(20, T0 + 11 * MIN, 3 * MIN, "b")))
    assert before.severity == "medium" and after.severity == "high"
    assert after.episode_key == before.episode_key
    assert after.window_end > before.window_end


# --- extended_debugging -------------------------------------------------------


def debug_session(sid: str, duration: timedelta, closed: bool = True) -> list[NormalizedEvent]:
    """A session with the developer active throughout (a breakpoint hit every 4 minutes: no idle gap)."""
    events = [ev(f"start-{sid}", "debug.start", T0, debug_session_id=sid)]
    t, i = T0 + 4 * MIN, 0
    while t < T0 + duration:
        events.append(ev(f"hit-{sid}-{i}", "debug.breakpoint_hit", t, debug_session_id=sid))
        t, i = t + 4 * MIN, i + 1
    kind = "debug.stop" if closed else "file.edit"
    events.append(ev(f"end-{sid}", kind, T0 + duration, debug_session_id=sid, chars_typed=0))
    return events


@pytest.mark.parametrize(
    ("duration", "severity"),
    [
        (59 * MIN + 59 * SEC, None),
        (60 * MIN, "medium"),
        (119 * MIN + 59 * SEC, "medium"),
        (120 * MIN, "high"),
    ],
)
@pytest.mark.parametrize("closed", [True, False])
def test_debug_duration_thresholds(duration: timedelta, severity: str | None, closed: bool) -> None:
    found = detect_extended_debugging(debug_session("s1", duration, closed))
    if severity is None:
        assert found == []
    else:
        d = only(found)
        assert (d.severity, d.episode_key, d.details["still_open"]) == (severity, "s1", not closed)
        assert d.details["duration_seconds"] == duration.total_seconds()
        assert (d.window_start, d.window_end) == (T0, T0 + duration)


def test_open_debug_session_closed_later_keeps_its_key_and_raises_severity() -> None:
    first_batch = [ev("d0", "debug.start", T0, debug_session_id="abc"), *ticks(T0, T0 + 70 * MIN, 5 * MIN, "t")]
    before = only(detect_extended_debugging(first_batch))
    assert (before.severity, before.details["still_open"], before.window_end) == ("medium", True, T0 + 70 * MIN)

    later = [
        *ticks(T0 + 75 * MIN, T0 + 125 * MIN, 5 * MIN, "u"),
        ev("d1", "debug.stop", T0 + 126 * MIN, debug_session_id="abc"),
    ]
    after = only(detect_extended_debugging(first_batch + later))
    assert (after.severity, after.details["still_open"], after.window_end) == ("high", False, T0 + 126 * MIN)
    assert after.episode_key == before.episode_key == "abc"


def test_debug_stop_pairs_by_session_id_only() -> None:
    events = [
        ev("a", "debug.start", T0, debug_session_id="one"),
        ev("b", "debug.start", T0 + 30 * MIN, debug_session_id="two"),
        ev("c", "debug.stop", T0 + 40 * MIN, debug_session_id="two"),  # closes "two", not "one"
        ev("d", "debug.stop", T0 + 65 * MIN, debug_session_id="one"),
        *ticks(T0, T0 + 65 * MIN, 4 * MIN, "t"),
    ]
    d = only(detect_extended_debugging(events))
    assert (d.episode_key, d.details["duration_minutes"], d.details["still_open"]) == ("one", 65.0, False)


def test_a_stop_before_the_start_does_not_close_the_session() -> None:
    events = [
        ev("old-stop", "debug.stop", T0 - 5 * MIN, debug_session_id="s"),
        ev("start", "debug.start", T0, debug_session_id="s"),
        *ticks(T0, T0 + 65 * MIN, 5 * MIN, "t"),
    ]
    d = only(detect_extended_debugging(events))
    assert (d.details["still_open"], d.window_end) == (True, T0 + 65 * MIN)


def test_stop_at_the_same_instant_as_start_closes_it_even_if_it_sorts_first() -> None:
    events = [
        ev("z-start", "debug.start", T0, debug_session_id="s"),
        ev("a-stop", "debug.stop", T0, debug_session_id="s"),  # sorts before the start by event_id
        *ticks(T0, T0 + 90 * MIN, 5 * MIN, "t"),
    ]
    assert detect_extended_debugging(events) == []


# --- high_ai_dependency -------------------------------------------------------


def ai_mix(ai: int, typed: int, start: datetime = T0, tag: str = "m") -> list[NormalizedEvent]:
    # Typed first: a window is judged at its last event, so the window ending at
    # the AI insert holds both and its share is exactly ai / (ai + typed).
    return [
        ev(f"{tag}-typed", "file.edit", start, chars_typed=typed),
        ev(f"{tag}-ai", "ai.suggestion_accepted", start + 10 * MIN, chars_inserted=ai),
    ]


@pytest.mark.parametrize(
    ("ai", "typed", "severity"),
    [
        (6999, 3001, None),  # 0.6999
        (7000, 3000, "medium"),  # 0.70
        (8999, 1001, "medium"),  # 0.8999
        (9000, 1000, "high"),  # 0.90
        (474, 25, None),  # share 0.95 but only 499 characters
        (475, 25, "high"),  # share 0.95 with 500 characters
    ],
)
def test_ai_share_thresholds(ai: int, typed: int, severity: str | None) -> None:
    found = detect_high_ai_dependency(ai_mix(ai, typed))
    if severity is None:
        assert found == []
    else:
        d = only(found)
        assert d.severity == severity
        assert (d.details["peak_ai_chars"], d.details["peak_typed_chars"]) == (ai, typed)
        assert d.details["peak_ai_share"] == round(ai / (ai + typed), 4)
        assert d.details["ai_min_chars"] == 500


def test_both_ai_event_types_count_and_only_file_edits_count_as_typed() -> None:
    events = [
        ev("a", "file.edit", T0, chars_typed=100),
        ev("b", "ai.suggestion_accepted", T0 + MIN, chars_inserted=300),
        ev("c", "ai.chat_insert", T0 + 2 * MIN, chars_inserted=300),
        ev("d", "terminal.command", T0 + 3 * MIN, exit_code=0, chars_typed=5000),  # not a file.edit
    ]
    d = only(detect_high_ai_dependency(events))
    assert (d.details["peak_ai_chars"], d.details["peak_typed_chars"], d.severity) == (600, 100, "medium")


def test_ai_window_is_sixty_minutes() -> None:
    def pair(gap: timedelta) -> list[NormalizedEvent]:
        return [
            ev("a", "ai.chat_insert", T0, chars_inserted=300),
            ev("b", "ai.chat_insert", T0 + gap, chars_inserted=300),
        ]

    assert detect_high_ai_dependency(pair(60 * MIN)) == []  # neither window alone reaches 500 characters
    assert only(detect_high_ai_dependency(pair(60 * MIN - SEC))).severity == "high"


def test_ai_episode_extended_later_keeps_its_key() -> None:
    first = ai_mix(800, 200)  # 0.80: medium
    before = only(detect_high_ai_dependency(first))
    more = [ev("x", "ai.chat_insert", T0 + 20 * MIN, chars_inserted=3000)]  # window now 3800/4000 = 0.95
    after = only(detect_high_ai_dependency(first + more))
    assert (before.severity, after.severity) == ("medium", "high")
    assert after.episode_key == before.episode_key == T0.isoformat()


# --- no_break -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "severity"),
    [
        (2 * 60 * MIN + 59 * MIN, None),
        (3 * 60 * MIN, "medium"),
        (4 * 60 * MIN + 59 * MIN, "medium"),
        (5 * 60 * MIN, "high"),
    ],
)
def test_no_break_thresholds(length: timedelta, severity: str | None) -> None:
    found = detect_no_break(ticks(T0, T0 + length, 7 * MIN, "t"))
    if severity is None:
        assert found == []
    else:
        d = only(found)
        assert (d.severity, d.details["duration_minutes"]) == (severity, length / MIN)


def test_a_gap_of_exactly_ten_minutes_is_not_a_break() -> None:
    def run(gap: timedelta) -> list[NormalizedEvent]:
        return ticks(T0, T0 + 90 * MIN, 5 * MIN, "a") + ticks(T0 + 90 * MIN + gap, T0 + 4 * 60 * MIN, 5 * MIN, "b")

    assert only(detect_no_break(run(10 * MIN))).severity == "medium"
    assert detect_no_break(run(10 * MIN + SEC)) == []


def test_growing_run_keeps_its_key_and_a_bridging_event_keeps_the_earlier_key() -> None:
    first = ticks(T0, T0 + 3 * 60 * MIN + 30 * MIN, 5 * MIN, "a")
    before = only(detect_no_break(first))
    grown = first + ticks(T0 + 3 * 60 * MIN + 35 * MIN, T0 + 5 * 60 * MIN + 10 * MIN, 5 * MIN, "b")
    after = only(detect_no_break(grown))
    assert (before.severity, after.severity) == ("medium", "high")
    assert after.episode_key == before.episode_key == T0.isoformat()

    # Two medium runs 15 minutes apart; a late event in the gap joins them under the earlier key.
    second_start = T0 + 3 * 60 * MIN + 45 * MIN
    two_runs = first + ticks(second_start, second_start + 3 * 60 * MIN, 5 * MIN, "c")
    assert [d.episode_key for d in detect_no_break(two_runs)] == [T0.isoformat(), second_start.isoformat()]
    bridged = [*two_runs, ev("late", "file.edit", T0 + 3 * 60 * MIN + 38 * MIN, chars_typed=1)]
    assert only(detect_no_break(bridged)).episode_key == T0.isoformat()


# --- late_night_work ----------------------------------------------------------


def night_ticks(
    local_start: datetime, local_end: datetime, offset: int, step: timedelta = MIN, tag: str = "n"
) -> list[NormalizedEvent]:
    """Events given in LOCAL wall time (naive), stored as UTC with the offset."""
    shift = timedelta(minutes=offset)
    return ticks((local_start - shift).replace(tzinfo=UTC), (local_end - shift).replace(tzinfo=UTC), step, tag, offset)


LOCAL_NIGHT = datetime(2024, 5, 7)  # local midnight starting the night of 7 May


@pytest.mark.parametrize(("minutes", "severity"), [(29, None), (30, "low"), (119, "low"), (120, "medium")])
@pytest.mark.parametrize("offset", [120, -300, 330])
def test_late_night_thresholds_in_local_time(minutes: int, severity: str | None, offset: int) -> None:
    start = LOCAL_NIGHT + timedelta(hours=1)
    events = night_ticks(start, start + minutes * MIN, offset)
    found = detect_late_night_work(events)
    if severity is None:
        assert found == []
    else:
        d = only(found)
        assert (d.severity, d.details["active_minutes"], d.episode_key) == (severity, minutes, "2024-05-07")
        assert d.details["local_start"] == "2024-05-07T01:00:00"
        assert d.window_start == (start - timedelta(minutes=offset)).replace(tzinfo=UTC)
    # The same UTC instants read with offset 0 fall (mostly) outside the night.
    at_utc = detect_late_night_work([ev(e.event_id, e.type, e.ts) for e in events])
    assert [d.details["active_minutes"] for d in at_utc] != [minutes]


def test_late_night_activity_is_clipped_to_the_night_window() -> None:
    # 23:45 -> 00:29 local: only the 29 minutes after midnight count.
    assert detect_late_night_work(night_ticks(LOCAL_NIGHT - 15 * MIN, LOCAL_NIGHT + 29 * MIN, 60)) == []
    d = only(detect_late_night_work(night_ticks(LOCAL_NIGHT - 15 * MIN, LOCAL_NIGHT + 30 * MIN, 60)))
    assert (d.details["active_minutes"], d.details["local_start"]) == (30, "2024-05-07T00:00:00")
    # 04:31 -> 05:30 local: only 29 minutes before 05:00.
    five = LOCAL_NIGHT + timedelta(hours=5)
    assert detect_late_night_work(night_ticks(five - 29 * MIN, five + 30 * MIN, 60)) == []
    assert only(detect_late_night_work(night_ticks(five - 30 * MIN, five + 30 * MIN, 60))).severity == "low"


def test_a_gap_is_placed_in_local_time_with_the_offset_of_its_earlier_event() -> None:
    # The developer's offset changes from +60 to +120 between two events 4 minutes apart:
    # with the earlier offset the gap is local 23:58 -> 00:02, so 2 minutes of night.
    a = ev("a", "file.edit", datetime(2024, 5, 6, 22, 58, tzinfo=UTC), 60, chars_typed=1)
    b = ev("b", "file.edit", datetime(2024, 5, 6, 23, 2, tzinfo=UTC), 120, chars_typed=1)
    d = only(detect_late_night_work([b, a], DangerThresholds(late_night_low_minutes=1)))
    assert (d.details["active_minutes"], d.details["local_start"]) == (2, "2024-05-07T00:00:00")

    # Two events at one instant with different offsets: the one sorting last by
    # event_id starts the next gap, whatever the delivery order.
    twin = ev("a2", "file.edit", a.ts, 120, chars_typed=1)
    for order in ([a, twin, b], [twin, a, b], [b, twin, a]):
        d = only(detect_late_night_work(order, DangerThresholds(late_night_low_minutes=1)))
        assert d.details["active_minutes"] == 4


def test_only_gaps_up_to_the_idle_timeout_are_active() -> None:
    start = LOCAL_NIGHT + timedelta(hours=2)
    assert only(detect_late_night_work(night_ticks(start, start + 35 * MIN, 120, step=5 * MIN))).severity == "low"
    assert detect_late_night_work(night_ticks(start, start + 301 * 7 * SEC, 120, step=301 * SEC)) == []


# --- critical escalation and ordering -----------------------------------------


def test_two_overlapping_high_patterns_become_critical() -> None:
    events = debug_session("dbg", 130 * MIN, closed=True) + failing_commands(40, T0 + 60 * MIN)
    found = detections(events)
    assert {(d.pattern, d.severity) for d in found} == {
        ("extended_debugging", "critical"),
        ("excessive_errors", "critical"),
    }
    for d in found:
        assert d.details["escalated_from"] == "high"
        assert d.recommendation != only(RULES[d.pattern](events, DangerThresholds(), None)).recommendation
    assert {tuple(d.details["critical_with"]) for d in found} == {("excessive_errors",), ("extended_debugging",)}


def test_one_high_pattern_alone_is_not_critical() -> None:
    events = debug_session("dbg", 70 * MIN, closed=True) + failing_commands(40, T0 + 30 * MIN)
    assert {(d.pattern, d.severity) for d in detections(events)} == {
        ("extended_debugging", "medium"),
        ("excessive_errors", "high"),
    }


def test_two_high_patterns_that_do_not_overlap_in_time_are_not_critical() -> None:
    events = debug_session("dbg", 130 * MIN, closed=True) + failing_commands(40, T0 + 131 * MIN)
    assert {d.severity for d in detections(events)} == {"high"}


def make(pattern: str, severity: str, end_minute: int, key: str = "k") -> Detection:
    return Detection(pattern, severity, T0, T0 + end_minute * MIN, key, {}, "advice")


def test_prioritize_orders_by_severity_then_newest_then_pattern() -> None:
    items = [
        make("no_break", "low", 90),
        make("no_break", "high", 10),
        make("extended_debugging", "high", 50),
        make("excessive_errors", "high", 50),
        make("high_ai_dependency", "medium", 99),
        make("late_night_work", "critical", 1),
    ]
    ordered = prioritize(items)
    assert [(d.severity, d.window_end, d.pattern) for d in ordered] == [
        ("critical", T0 + MIN, "late_night_work"),
        ("high", T0 + 50 * MIN, "excessive_errors"),
        ("high", T0 + 50 * MIN, "extended_debugging"),
        ("high", T0 + 10 * MIN, "no_break"),
        ("medium", T0 + 99 * MIN, "high_ai_dependency"),
        ("low", T0 + 90 * MIN, "no_break"),
    ]
    assert prioritize(reversed(items)) == ordered


def test_escalate_critical_is_idempotent_and_keeps_order() -> None:
    items = [make("no_break", "high", 30), make("excessive_errors", "high", 20), make("late_night_work", "low", 25)]
    once = escalate_critical(items)
    assert [d.severity for d in once] == ["critical", "critical", "low"]
    assert escalate_critical(once) == once


def test_severity_scale() -> None:
    assert [severity_rank(s) for s in SEVERITY_ORDER] == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        severity_rank("urgent")


def test_rules_registry_and_detect_agree() -> None:
    events = debug_session("dbg", 130 * MIN) + failing_commands(40, T0 + 60 * MIN) + ai_mix(900, 100)
    assert set(RULES) == {"excessive_errors", "extended_debugging", "high_ai_dependency", "no_break", "late_night_work"}
    per_rule = [d for name, rule in RULES.items() for d in rule(events, DangerThresholds(), None)]
    assert all(d.pattern == name for name, rule in RULES.items() for d in rule(events, DangerThresholds(), None))
    assert detections(events) == prioritize(escalate_critical(per_rule))
    for d in detections(events):
        json.dumps(d.details)


def test_conflicting_copies_of_one_event_id_resolve_the_same_whatever_the_order() -> None:
    base = failing_commands(19)
    failing = ev("dup", "terminal.command", T0 + MIN, exit_code=1)
    passing = ev("dup", "terminal.command", T0 + MIN, exit_code=0)
    assert detections([*base, failing, passing]) == detections([*base, passing, failing])
    assert detections([*base, failing, passing]) == detections([*base, passing])  # smallest content wins


def test_invalid_settings_and_naive_times_are_rejected() -> None:
    with pytest.raises(ValueError):
        DangerThresholds(excessive_errors_window_minutes=0)
    with pytest.raises(ValueError):
        DangerThresholds(late_night_start_hour=3, late_night_end_hour=3)
    with pytest.raises(ValueError):
        detections([ev("naive", "file.edit", datetime(2024, 5, 6, 9), chars_typed=1)])


# --- properties ---------------------------------------------------------------

# Low thresholds so that small random inputs actually trigger every rule.
SENSITIVE = DangerThresholds(
    excessive_errors_medium=2,
    excessive_errors_high=4,
    extended_debugging_medium_minutes=5,
    extended_debugging_high_minutes=20,
    ai_min_chars=20,
    no_break_medium_hours=0.25,
    no_break_high_hours=0.5,
    late_night_low_minutes=2,
    late_night_medium_minutes=6,
)
NIGHT_T0 = datetime(2024, 5, 6, 21, 0, tzinfo=UTC)


@st.composite
def event_sets(draw: st.DrawFn, lo_s: int = 0, hi_s: int = 6 * 3600, prefix: str = "e") -> list[NormalizedEvent]:
    n = draw(st.integers(0, 40))
    events = []
    for i in range(n):
        at = NIGHT_T0 + timedelta(seconds=draw(st.integers(lo_s, hi_s)))
        offset = draw(st.sampled_from([-300, 0, 120, 330]))
        kind = draw(st.sampled_from(["error", "build", "edit", "ai", "chat", "start", "stop"]))
        sid = draw(st.sampled_from(["s1", "s2"]))
        type_, payload = {
            "error": ("terminal.command", {"exit_code": draw(st.sampled_from([0, 1]))}),
            "build": ("build.result", {"success": draw(st.booleans())}),
            "edit": ("file.edit", {"chars_typed": draw(st.integers(0, 40))}),
            "ai": ("ai.suggestion_accepted", {"chars_inserted": draw(st.integers(0, 60))}),
            "chat": ("ai.chat_insert", {"chars_inserted": draw(st.integers(0, 60))}),
            "start": ("debug.start", {"debug_session_id": sid}),
            "stop": ("debug.stop", {"debug_session_id": sid}),
        }[kind]
        events.append(NormalizedEvent(f"{prefix}{i}", type_, at, payload, offset))
    return events


PROPERTY_SETTINGS = settings(
    max_examples=75, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(events=event_sets(), data=st.data(), thresholds=st.sampled_from([SENSITIVE, DangerThresholds()]))
def test_detect_is_deterministic_and_idempotent(
    events: list[NormalizedEvent], data: st.DataObject, thresholds: DangerThresholds
) -> None:
    expected = detections(events, thresholds)
    assert detections(events, thresholds) == expected
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=10)) if events else []
    shuffled = data.draw(st.permutations(events + duplicates))
    assert detections(iter(shuffled), thresholds) == expected
    assert prioritize(expected) == expected
    assert escalate_critical(expected) == expected
    keys = [(d.pattern, d.episode_key) for d in expected]
    assert len(keys) == len(set(keys))  # one alert per (developer, pattern, episode)
    for d in expected:
        json.dumps(d.details)


@PROPERTY_SETTINGS
@given(earlier=event_sets(0, 3 * 3600, "p"), later=event_sets(3 * 3600 + 1, 6 * 3600, "q"))
def test_later_events_never_lose_or_lower_an_episode(
    earlier: list[NormalizedEvent], later: list[NormalizedEvent]
) -> None:
    before = {(d.pattern, d.episode_key): d for d in detections(earlier, SENSITIVE)}
    after = {(d.pattern, d.episode_key): d for d in detections(earlier + later, SENSITIVE)}
    for key, d in before.items():
        assert key in after, key
        assert severity_rank(after[key].severity) >= severity_rank(d.severity)
        assert after[key].window_start == d.window_start and after[key].window_end >= d.window_end
