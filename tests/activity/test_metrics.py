from __future__ import annotations

import dataclasses
import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activity.events import NormalizedEvent
from activity.metrics import (
    METRIC_NAMES,
    BucketMetrics,
    compute_metrics,
    debug_intervals,
    is_error_event,
)

T0 = datetime(2024, 3, 10, 9, 0, tzinfo=UTC)


def at(hh: int, mm: int = 0, ss: int = 0, day: int = 10) -> datetime:
    return datetime(2024, 3, day, hh, mm, ss, tzinfo=UTC)


class Stream:
    """Builds events with sequential ids, so tests read like a timeline."""

    def __init__(self) -> None:
        self.events: list[NormalizedEvent] = []

    def add(self, ts: datetime, type_: str, **payload: Any) -> Stream:
        self.events.append(NormalizedEvent(f"e{len(self.events):03d}", type_, ts, payload))
        return self


def by_key(buckets: list[BucketMetrics]) -> dict[tuple[str, datetime], BucketMetrics]:
    return {(b.granularity, b.bucket_start): b for b in buckets}


def hour(buckets: list[BucketMetrics], ts: datetime) -> BucketMetrics:
    return by_key(buckets)[("hour", ts)]


def day(buckets: list[BucketMetrics], ts: datetime) -> BucketMetrics:
    return by_key(buckets)[("day", ts)]


# --- shape -------------------------------------------------------------------


def test_metric_names_and_as_dict() -> None:
    assert METRIC_NAMES == (
        "events", "active_seconds", "edits", "lines_added", "lines_deleted", "saves", "error_events",
        "builds", "build_failures", "tests_passed", "tests_failed", "debug_seconds", "typed_chars",
        "ai_chars_inserted", "ai_share", "commits",
    )  # fmt: skip
    field_names = [f.name for f in dataclasses.fields(BucketMetrics)]
    assert field_names == ["granularity", "bucket_start", *METRIC_NAMES]
    [b, _] = compute_metrics(Stream().add(at(9, 5), "file.save", file="a").events)
    assert list(b.as_dict()) == list(METRIC_NAMES)
    assert b.as_dict()["saves"] == 1


def test_empty_input() -> None:
    assert compute_metrics([]) == []


def test_output_sorted_day_then_hour() -> None:
    s = Stream().add(at(11), "window.focus").add(at(9), "window.focus").add(at(2, day=11), "window.focus")
    keys = [(b.granularity, b.bucket_start) for b in compute_metrics(s.events)]
    assert keys == [
        ("day", at(0)), ("day", at(0, day=11)),
        ("hour", at(9)), ("hour", at(11)), ("hour", at(2, day=11)),
    ]  # fmt: skip


def test_naive_timestamps_rejected() -> None:
    with pytest.raises(ValueError):
        compute_metrics([NormalizedEvent("x", "window.focus", datetime(2024, 1, 1))])


def test_non_utc_timestamps_bucket_by_utc() -> None:
    ts = datetime(2024, 3, 10, 23, 30, tzinfo=timezone(timedelta(hours=-2)))  # 01:30 UTC on the 11th
    [d, h] = compute_metrics([NormalizedEvent("x", "window.focus", ts)])
    assert d.bucket_start == at(0, day=11) and h.bucket_start == at(1, day=11)
    assert h.bucket_start.utcoffset() == timedelta(0)


# --- active time -------------------------------------------------------------


def test_gap_attributed_to_earlier_event_across_hour_boundary() -> None:
    s = (
        Stream()
        .add(at(9, 58), "window.focus")
        .add(at(10, 2), "file.save", file="a")  # 240 s gap, crosses 10:00, all to hour 9
        .add(at(10, 20), "file.save", file="a")  # 18 min gap: idle, counts 0
        .add(at(10, 23), "file.save", file="a")  # 180 s, hour 10
    )
    result = compute_metrics(s.events)
    assert hour(result, at(9)).active_seconds == 240.0
    assert hour(result, at(10)).active_seconds == 180.0
    assert day(result, at(0)).active_seconds == 420.0
    assert hour(result, at(9)).events == 1 and hour(result, at(10)).events == 3
    assert day(result, at(0)).events == 4


def test_gap_across_day_boundary() -> None:
    s = Stream().add(at(23, 58), "window.focus").add(at(0, 1, day=11), "window.blur")
    result = compute_metrics(s.events)
    assert day(result, at(0)).active_seconds == 180.0
    assert day(result, at(0, day=11)).active_seconds == 0.0


def test_idle_timeout_is_inclusive() -> None:
    s = Stream().add(at(9), "window.focus").add(at(9, 5), "window.focus").add(at(9, 10, 1), "window.focus")
    assert hour(compute_metrics(s.events), at(9)).active_seconds == 300.0
    assert hour(compute_metrics(s.events, idle_timeout_seconds=301), at(9)).active_seconds == 601.0
    assert hour(compute_metrics(s.events, idle_timeout_seconds=299), at(9)).active_seconds == 0.0


def test_fractional_gaps() -> None:
    s = Stream().add(at(9), "window.focus").add(at(9) + timedelta(microseconds=1_500_001), "window.blur")
    assert hour(compute_metrics(s.events), at(9)).active_seconds == 1.500001


# --- counters ----------------------------------------------------------------


def test_edit_save_commit_counters() -> None:
    s = (
        Stream()
        .add(at(9, 1), "file.edit", file="a", lines_added=5, lines_deleted=2, chars_typed=40)
        .add(at(9, 2), "file.edit", file="a", lines_added=1, lines_deleted=0)  # no chars_typed
        .add(at(9, 3), "file.save", file="a")
        .add(at(9, 4), "file.save", file="b")
        .add(at(9, 5), "git.commit", files_changed=2, lines_added=100)  # commit lines are not edits
        .add(at(10, 1), "file.edit", file="b", lines_added=3, lines_deleted=4, chars_typed=2)
    )
    result = compute_metrics(s.events)
    h9 = hour(result, at(9))
    assert (h9.edits, h9.lines_added, h9.lines_deleted, h9.saves, h9.typed_chars, h9.commits) == (2, 6, 2, 2, 40, 1)
    d = day(result, at(0))
    assert (d.edits, d.lines_added, d.lines_deleted, d.saves, d.typed_chars, d.commits) == (3, 9, 6, 2, 42, 1)


def test_build_and_test_counters() -> None:
    s = (
        Stream()
        .add(at(9, 1), "build.result", success=True, duration_ms=10)
        .add(at(9, 2), "build.result", success=False)
        .add(at(9, 3), "build.result", success=False)
        .add(at(9, 4), "test.result", passed=10, failed=0)
        .add(at(9, 5), "test.result", passed=7, failed=3)
    )
    h = hour(compute_metrics(s.events), at(9))
    assert (h.builds, h.build_failures, h.tests_passed, h.tests_failed) == (3, 2, 17, 3)
    assert h.error_events == 3  # two failed builds, one test run with failures


@pytest.mark.parametrize(
    ("type_", "payload", "expected"),
    [
        ("build.result", {"success": False}, True),
        ("build.result", {"success": True}, False),
        ("test.result", {"passed": 0, "failed": 1}, True),
        ("test.result", {"passed": 5, "failed": 0}, False),
        ("terminal.command", {"exit_code": 1}, True),
        ("terminal.command", {"exit_code": -9}, True),
        ("terminal.command", {"exit_code": 0}, False),
        ("diagnostics.snapshot", {"errors": 2, "warnings": 0}, True),
        ("diagnostics.snapshot", {"errors": 0, "warnings": 9}, False),
        ("file.save", {"file": "a", "exit_code": 1, "success": False}, False),
    ],
)
def test_is_error_event(type_: str, payload: dict[str, Any], expected: bool) -> None:
    event = NormalizedEvent("x", type_, T0, payload)
    assert is_error_event(event) is expected
    assert hour(compute_metrics([event]), at(9)).error_events == int(expected)


def test_ai_share() -> None:
    s = (
        Stream()
        .add(at(9, 1), "file.edit", file="a", lines_added=1, lines_deleted=0, chars_typed=30)
        .add(at(9, 2), "ai.suggestion_accepted", chars_inserted=6)
        .add(at(9, 3), "ai.chat_insert", chars_inserted=4)
        .add(at(9, 4), "ai.suggestion_shown", chars=1000)  # shown, not inserted
        .add(at(10, 1), "ai.suggestion_shown", chars=50)
        .add(at(11, 1), "ai.chat_insert", chars_inserted=8)
    )
    result = compute_metrics(s.events)
    h9 = hour(result, at(9))
    assert (h9.typed_chars, h9.ai_chars_inserted, h9.ai_share) == (30, 10, 0.25)
    assert hour(result, at(10)).ai_share is None
    assert hour(result, at(11)).ai_share == 1.0
    assert day(result, at(0)).ai_share == 18 / 48


def test_duplicates_counted_once() -> None:
    edit = NormalizedEvent("dup", "file.edit", at(9, 1), {"file": "a", "lines_added": 5, "lines_deleted": 0})
    other = NormalizedEvent("other", "window.focus", at(9, 3))
    h = hour(compute_metrics([edit, other, edit, edit]), at(9))
    assert (h.events, h.edits, h.lines_added, h.active_seconds) == (2, 1, 5, 120.0)


def test_conflicting_duplicates_resolved_independently_of_order() -> None:
    a = NormalizedEvent("same", "file.save", at(9, 1), {"file": "a"})
    b = NormalizedEvent("same", "file.edit", at(9, 1), {"file": "a", "lines_added": 1, "lines_deleted": 0})
    assert compute_metrics([a, b]) == compute_metrics([b, a])
    assert hour(compute_metrics([a, b]), at(9)).events == 1


# --- debugging ---------------------------------------------------------------


def test_debug_split_across_buckets_and_empty_middle_hour() -> None:
    s = (
        Stream()
        .add(at(9, 40), "debug.start", debug_session_id="s1")
        .add(at(11, 10), "debug.stop", debug_session_id="s1")
    )
    result = compute_metrics(s.events)
    assert hour(result, at(9)).debug_seconds == 20 * 60
    middle = hour(result, at(10))
    assert middle.debug_seconds == 3600 and middle.events == 0 and middle.active_seconds == 0
    assert hour(result, at(11)).debug_seconds == 10 * 60
    assert day(result, at(0)).debug_seconds == 90 * 60
    assert debug_intervals(s.events, at(11, 10)) == [(at(9, 40), at(11, 10), "s1")]


def test_debug_split_across_days() -> None:
    s = (
        Stream()
        .add(at(23, 30), "debug.start", debug_session_id="s")
        .add(at(0, 15, day=11), "debug.stop", debug_session_id="s")
    )
    result = compute_metrics(s.events)
    assert day(result, at(0)).debug_seconds == 1800
    assert day(result, at(0, day=11)).debug_seconds == 900


def test_debug_ending_on_boundary_creates_no_empty_bucket() -> None:
    s = Stream().add(at(9, 30), "debug.start", debug_session_id="s").add(at(10), "debug.stop", debug_session_id="s")
    keys = set(by_key(compute_metrics(s.events)))
    assert keys == {("day", at(0)), ("hour", at(9)), ("hour", at(10))}  # hour 10 only via the stop event
    assert hour(compute_metrics(s.events), at(10)).debug_seconds == 0


def test_unmatched_start_runs_until_last_event() -> None:
    s = (
        Stream()
        .add(at(9, 50), "debug.start", debug_session_id="open")
        .add(at(9, 55), "debug.stop", debug_session_id="other-id")  # different id: no match
        .add(at(10, 30), "file.save", file="a")
    )
    result = compute_metrics(s.events)
    assert hour(result, at(9)).debug_seconds == 600
    assert hour(result, at(10)).debug_seconds == 1800
    assert debug_intervals(s.events, at(10, 30)) == [(at(9, 50), at(10, 30), "open")]


def test_stop_before_start_does_not_match() -> None:
    s = (
        Stream()
        .add(at(9, 0), "debug.stop", debug_session_id="s")
        .add(at(9, 10), "debug.start", debug_session_id="s")
        .add(at(9, 40), "window.blur")
    )
    assert hour(compute_metrics(s.events), at(9)).debug_seconds == 1800


def test_repeated_sessions_and_overlapping_ids() -> None:
    s = (
        Stream()
        .add(at(9, 0), "debug.start", debug_session_id="a")
        .add(at(9, 10), "debug.stop", debug_session_id="a")
        .add(at(9, 20), "debug.start", debug_session_id="a")
        .add(at(9, 25), "debug.start", debug_session_id="b")
        .add(at(9, 50), "debug.stop", debug_session_id="a")
        .add(at(9, 55), "debug.stop", debug_session_id="b")
    )
    # a: 10 min + 30 min; b overlaps a and counts separately: 30 min.
    assert hour(compute_metrics(s.events), at(9)).debug_seconds == 70 * 60
    assert debug_intervals(s.events, at(9, 55)) == [
        (at(9, 0), at(9, 10), "a"),
        (at(9, 20), at(9, 50), "a"),
        (at(9, 25), at(9, 55), "b"),
    ]


def test_stop_at_same_instant_as_start_matches() -> None:
    s = Stream().add(at(9), "debug.start", debug_session_id="z").add(at(9), "debug.stop", debug_session_id="z")
    s.add(at(9, 30), "window.blur")
    assert hour(compute_metrics(s.events), at(9)).debug_seconds == 0


def test_debugging_heartbeats_form_runs() -> None:
    def hb(ts: datetime, category: str) -> None:
        s.add(ts, "editor.heartbeat", entity="/a.py", time=ts.timestamp(), category=category)

    s = Stream()
    hb(at(9, 58), "debugging")
    hb(at(10, 1), "debugging")
    hb(at(10, 5), "debugging")  # run 9:58-10:05 (the coding one below does not break it)
    hb(at(10, 3), "coding")
    hb(at(10, 30), "debugging")  # lone heartbeat: no duration
    hb(at(10, 40), "coding")
    result = compute_metrics(s.events)
    assert hour(result, at(9)).debug_seconds == 120
    assert hour(result, at(10)).debug_seconds == 300
    intervals = debug_intervals(s.events, at(10, 40))
    assert [(start, end) for start, end, _ in intervals] == [(at(9, 58), at(10, 5))]
    assert intervals[0][2].startswith("heartbeat:")
    # With a 2-minute idle timeout the 3- and 4-minute gaps split the run.
    assert hour(compute_metrics(s.events, idle_timeout_seconds=120), at(10)).debug_seconds == 0


def test_debug_intervals_dedupes_and_accepts_any_order() -> None:
    s = Stream().add(at(9, 10), "debug.stop", debug_session_id="s").add(at(9), "debug.start", debug_session_id="s")
    assert debug_intervals([*s.events, s.events[1]], at(9, 10)) == [(at(9), at(9, 10), "s")]


# --- since -------------------------------------------------------------------


def test_since_uses_earlier_events_as_context() -> None:
    s = (
        Stream()
        .add(at(23, 58, day=9), "window.focus")  # gap of 4 min is day 9's
        .add(at(0, 2), "window.focus")
        .add(at(23, 0, day=9), "debug.start", debug_session_id="s")
        .add(at(1, 0), "debug.stop", debug_session_id="s")
    )
    result = compute_metrics(s.events, since=at(0))
    assert {b.bucket_start for b in result} == {at(0), at(1)}
    assert day(result, at(0)).debug_seconds == 3600
    assert day(result, at(0)).active_seconds == 0
    assert hour(result, at(1)).debug_seconds == 0 and hour(result, at(1)).events == 1


# --- properties --------------------------------------------------------------

BASE = datetime(2024, 3, 10, 21, 0, tzinfo=UTC)  # streams cross midnight
SPAN_MS = 5 * 3600 * 1000
counts = st.integers(min_value=0, max_value=50)
debug_ids = st.sampled_from(["d1", "d2", "d3"])

PAYLOADS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "session.start": st.just({"editor": "vscode"}),
    "window.focus": st.just({}),
    "file.save": st.just({"file": "a.py"}),
    "file.edit": st.fixed_dictionaries(
        {"file": st.just("a.py"), "lines_added": counts, "lines_deleted": counts},
        optional={"chars_typed": counts},
    ),
    "diagnostics.snapshot": st.fixed_dictionaries({"errors": st.integers(0, 2), "warnings": counts}),
    "build.result": st.fixed_dictionaries({"success": st.booleans()}),
    "test.result": st.fixed_dictionaries({"passed": counts, "failed": st.integers(0, 2)}),
    "debug.start": st.fixed_dictionaries({"debug_session_id": debug_ids}),
    "debug.stop": st.fixed_dictionaries({"debug_session_id": debug_ids}),
    "terminal.command": st.fixed_dictionaries({"exit_code": st.integers(-2, 2)}),
    "ai.suggestion_shown": st.fixed_dictionaries({"chars": counts}),
    "ai.suggestion_accepted": st.fixed_dictionaries({"chars_inserted": counts}),
    "ai.chat_insert": st.fixed_dictionaries({"chars_inserted": counts}),
    "git.commit": st.just({}),
    "editor.heartbeat": st.fixed_dictionaries(
        {"entity": st.just("/a.py"), "time": st.just(0), "category": st.sampled_from(["debugging", "coding"])}
    ),
}


@st.composite
def raw_event(draw: st.DrawFn) -> tuple[str, datetime, dict[str, Any]]:
    type_ = draw(st.sampled_from(sorted(PAYLOADS)))
    # Milliseconds over a few hours; a narrow cluster makes equal timestamps
    # and sub-idle gaps common.
    offset_ms = draw(st.one_of(st.integers(0, SPAN_MS), st.integers(3_590_000, 3_610_000)))
    return type_, BASE + timedelta(milliseconds=offset_ms), draw(PAYLOADS[type_])


@st.composite
def streams(draw: st.DrawFn) -> list[NormalizedEvent]:
    raws = draw(st.lists(raw_event(), max_size=40))
    # Ids deliberately not in time order, so the (ts, event_id) tie-break matters.
    ids = draw(st.permutations(range(len(raws))))
    return [NormalizedEvent(f"id{i:02d}", t, ts, p) for i, (t, ts, p) in zip(ids, raws, strict=True)]


idle_timeouts = st.sampled_from([0, 60, 300, 1800])
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


@PROPERTY_SETTINGS
@given(events=streams(), idle=idle_timeouts, data=st.data())
def test_order_duplication_and_chunking_do_not_matter(
    events: list[NormalizedEvent], idle: int, data: st.DataObject
) -> None:
    expected = compute_metrics(sorted(events, key=lambda e: (e.ts, e.event_id)), idle_timeout_seconds=idle)

    shuffled = data.draw(st.permutations(events))
    extra = data.draw(st.lists(st.sampled_from(events), max_size=15)) if events else []
    noisy = data.draw(st.permutations(shuffled + extra))
    assert compute_metrics(noisy, idle_timeout_seconds=idle) == expected

    cuts = sorted(data.draw(st.lists(st.integers(0, len(noisy)), max_size=5)))
    bounds = [0, *cuts, len(noisy)]
    chunks = [noisy[a:b] for a, b in itertools.pairwise(bounds)]
    reordered = [e for chunk in data.draw(st.permutations(chunks)) for e in chunk]
    assert compute_metrics(iter(reordered), idle_timeout_seconds=idle) == expected


@PROPERTY_SETTINGS
@given(events=streams(), idle=idle_timeouts, day_shift=st.integers(-1, 2))
def test_since_equals_filtered_full_computation(events: list[NormalizedEvent], idle: int, day_shift: int) -> None:
    since = datetime(2024, 3, 10, tzinfo=UTC) + timedelta(days=day_shift)
    full = compute_metrics(events, idle_timeout_seconds=idle)
    assert compute_metrics(events, idle_timeout_seconds=idle, since=since) == [
        b for b in full if b.bucket_start >= since
    ]


def _reference(events: list[NormalizedEvent], idle: int) -> dict[tuple[str, datetime], dict[str, Any]]:
    """A deliberately naive re-statement of the definitions, bucket by bucket."""
    unique = sorted({e.event_id: e for e in events}.values(), key=lambda e: (e.ts, e.event_id))
    last = unique[-1].ts if unique else None
    intervals = []
    for e in unique:
        if e.type != "debug.start":
            continue
        sid = e.payload["debug_session_id"]
        stop = next(
            (s.ts for s in unique if s.type == "debug.stop" and s.payload["debug_session_id"] == sid and s.ts >= e.ts),
            None,
        )
        intervals.append((e.ts, stop if stop is not None else last))
    beats = [e.ts for e in unique if e.type == "editor.heartbeat" and e.payload["category"] == "debugging"]
    run_start = 0
    for i in range(1, len(beats) + 1):
        if i == len(beats) or (beats[i] - beats[i - 1]).total_seconds() > idle:
            intervals.append((beats[run_start], beats[i - 1]))
            run_start = i

    out: dict[tuple[str, datetime], dict[str, Any]] = {}
    for gran, size in (("hour", timedelta(hours=1)), ("day", timedelta(days=1))):
        starts = {BASE.replace(hour=0) + k * size for k in range(-1, 60 if gran == "hour" else 3)}
        for start in sorted(starts):
            end = start + size
            inside = [e for e in unique if start <= e.ts < end]
            debug_us = sum(max(0, int((min(b, end) - max(a, start)) / timedelta(microseconds=1))) for a, b in intervals)
            active_us = 0
            for i, e in enumerate(unique[:-1]):
                gap = unique[i + 1].ts - e.ts
                if start <= e.ts < end and gap.total_seconds() <= idle:
                    active_us += int(gap / timedelta(microseconds=1))
            if not inside and not debug_us:
                continue
            typed = sum(e.payload.get("chars_typed", 0) for e in inside if e.type == "file.edit")
            ai = sum(
                e.payload["chars_inserted"] for e in inside if e.type in ("ai.suggestion_accepted", "ai.chat_insert")
            )
            builds = [e for e in inside if e.type == "build.result"]
            tests = [e for e in inside if e.type == "test.result"]
            edits = [e for e in inside if e.type == "file.edit"]
            out[(gran, start)] = {
                "events": len(inside),
                "active_seconds": active_us / 1e6,
                "edits": len(edits),
                "lines_added": sum(e.payload["lines_added"] for e in edits),
                "lines_deleted": sum(e.payload["lines_deleted"] for e in edits),
                "saves": sum(e.type == "file.save" for e in inside),
                "error_events": sum(
                    (e.type == "build.result" and not e.payload["success"])
                    or (e.type == "test.result" and e.payload["failed"] > 0)
                    or (e.type == "terminal.command" and e.payload["exit_code"] != 0)
                    or (e.type == "diagnostics.snapshot" and e.payload["errors"] > 0)
                    for e in inside
                ),
                "builds": len(builds),
                "build_failures": sum(not e.payload["success"] for e in builds),
                "tests_passed": sum(e.payload["passed"] for e in tests),
                "tests_failed": sum(e.payload["failed"] for e in tests),
                "debug_seconds": debug_us / 1e6,
                "typed_chars": typed,
                "ai_chars_inserted": ai,
                "ai_share": ai / (ai + typed) if ai + typed else None,
                "commits": sum(e.type == "git.commit" for e in inside),
            }
    return out


@PROPERTY_SETTINGS
@given(events=streams(), idle=idle_timeouts)
def test_matches_naive_reference(events: list[NormalizedEvent], idle: int) -> None:
    result = compute_metrics(events, idle_timeout_seconds=idle)
    assert {(b.granularity, b.bucket_start): b.as_dict() for b in result} == _reference(events, idle)


@PROPERTY_SETTINGS
@given(events=streams(), idle=idle_timeouts)
def test_hours_add_up_to_days(events: list[NormalizedEvent], idle: int) -> None:
    result = compute_metrics(events, idle_timeout_seconds=idle)
    days = {b.bucket_start: b for b in result if b.granularity == "day"}
    for day_start, d in days.items():
        day_end = day_start + timedelta(days=1)
        hours = [b for b in result if b.granularity == "hour" and day_start <= b.bucket_start < day_end]
        for name in METRIC_NAMES:
            if name == "ai_share":
                continue
            assert sum(getattr(h, name) for h in hours) == pytest.approx(getattr(d, name), abs=1e-6), name
    assert sum(d.events for d in days.values()) == len({e.event_id for e in events})
