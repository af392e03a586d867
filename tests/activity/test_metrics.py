"""activity/metrics.py and activity/sessions.py: slots, active time, debug sessions, breakdowns."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from activity.events import NormalizedEvent, order_key, prepare
from activity.metrics import (
    MAX_SUM,
    SLOT,
    SLOT_COLUMNS,
    SlotMetrics,
    compute_slots,
    is_error_event,
    slot_ceil,
    slot_floor,
)
from activity.sessions import debug_intervals, debug_sessions

DAY = datetime(2024, 3, 10, tzinfo=UTC)
WIDE = (DAY - timedelta(days=2), DAY + timedelta(days=3))


def at(hh: int, mm: int = 0, ss: int = 0, day: int = 10) -> datetime:
    return datetime(2024, 3, day, hh, mm, ss, tzinfo=UTC)


class Stream:
    """Builds events with sequential ids, so tests read like a timeline."""

    def __init__(self) -> None:
        self.events: list[NormalizedEvent] = []

    def add(self, ts: datetime, type_: str, *, seq: int | None = None, project: str | None = None,
            **payload: Any) -> Stream:
        n = len(self.events)
        self.events.append(NormalizedEvent(f"e{n:03d}", type_, ts, payload, seq=n if seq is None else seq,
                                           project=project))
        return self


def slots(events: list[NormalizedEvent], idle: int = 300, **kwargs: Any) -> dict[datetime, SlotMetrics]:
    result = compute_slots(events, since=WIDE[0], until=WIDE[1], idle_timeout_seconds=idle, **kwargs)
    return {m.slot_start: m for m in result.metrics}


def total(events: list[NormalizedEvent], name: str, idle: int = 300, **kwargs: Any) -> int:
    return sum(getattr(m, name) for m in slots(events, idle, **kwargs).values())


S = 1_000_000  # microseconds per second


# --- slots and active time ------------------------------------------------------------------------------


def test_slot_bounds() -> None:
    assert slot_floor(at(9, 14, 59)) == at(9) and slot_floor(at(9, 15)) == at(9, 15)
    assert slot_ceil(at(9, 15)) == at(9, 15) and slot_ceil(at(9, 15, 1)) == at(9, 30)
    with pytest.raises(ValueError, match="aware"):
        slot_floor(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="slot-aligned"):
        compute_slots([], since=at(9, 1), until=at(10))


def test_a_gap_is_split_across_the_slots_it_spans_by_wall_clock() -> None:
    # 09:58 -> 10:02 is four active minutes: two in the 09:45 slot, two in the 10:00 slot.
    s = Stream().add(at(9, 58), "file.save", file="a.py").add(at(10, 2), "file.save", file="a.py")
    result = slots(s.events)
    assert result[at(9, 45)].active_us == 120 * S
    assert result[at(10, 0)].active_us == 120 * S


def test_no_slot_ever_exceeds_its_length() -> None:
    # Events every 4 minutes for three hours, then one 4m59s later: the old rule credited whole gaps to the
    # earlier bucket and an hour could hold 3,765 active seconds.
    s = Stream()
    for i in range(46):
        s.add(at(9) + timedelta(minutes=4 * i), "window.focus")
    s.add(at(9) + timedelta(minutes=180, seconds=299), "window.focus")
    result = slots(s.events)
    assert max(m.active_us for m in result.values()) <= SLOT // timedelta(microseconds=1)
    assert sum(m.active_us for m in result.values()) == (180 * 60 + 299) * S


def test_the_idle_timeout_is_inclusive_and_longer_gaps_count_nothing() -> None:
    s = Stream().add(at(9), "window.focus").add(at(9, 5), "window.focus").add(at(9, 10, 1), "window.focus")
    assert total(s.events, "active_us", idle=300) == 300 * S


def test_equal_timestamps_keep_batch_order() -> None:
    # Two events at the same instant: the one later in its batch is the earlier event of the next gap, so the
    # gap is Go time whatever the event ids say.
    t = at(9)
    events = [NormalizedEvent("ffff", "file.save", t, {"file": "a.py"}, seq=0),
              NormalizedEvent("0000", "file.save", t, {"file": "b.go"}, seq=1),
              NormalizedEvent("zzzz", "window.focus", t + timedelta(seconds=60), {}, seq=2)]
    assert [e.event_id for e in prepare(reversed(events))] == ["ffff", "0000", "zzzz"]
    result = compute_slots(events, since=at(9), until=at(10))
    assert {(b.dimension, b.key): b.active_us for b in result.breakdowns} == {
        ("language", "go"): 60 * S, ("project", "unknown"): 60 * S}
    # Across batches, the batch received first comes first.
    later_batch = NormalizedEvent("aaaa", "file.save", t, {"file": "c.rs"}, received_at=at(9, 1), seq=0)
    assert prepare([later_batch, *events])[-2].event_id == "aaaa"
    assert order_key(later_batch) > order_key(events[1])


def test_breakdown_uses_the_earlier_events_language_and_project() -> None:
    s = (Stream().add(at(9), "file.edit", file="/w/a.py", lines_added=1, lines_deleted=0, project="web")
         .add(at(9, 2), "file.edit", file="/w/b.ts", lines_added=1, lines_deleted=0)
         .add(at(9, 3), "window.focus"))
    result = compute_slots(s.events, since=at(9), until=at(10))
    assert {(b.dimension, b.key): b.active_us for b in result.breakdowns} == {
        ("language", "python"): 120 * S, ("language", "typescript"): 60 * S,
        ("project", "web"): 120 * S, ("project", "unknown"): 60 * S}


def test_counts_and_error_events() -> None:
    s = (Stream().add(at(9), "file.edit", file="a", lines_added=3, lines_deleted=1, chars_typed=10)
         .add(at(9, 1), "file.save", file="a").add(at(9, 2), "build.result", success=False)
         .add(at(9, 3), "test.result", passed=5, failed=1).add(at(9, 4), "git.commit")
         .add(at(9, 5), "ai.suggestion_accepted", chars_inserted=30).add(at(9, 6), "terminal.command", exit_code=2))
    m = slots(s.events)[at(9)]
    assert (m.events, m.edits, m.lines_added, m.lines_deleted, m.saves, m.builds, m.build_failures) == (
        7, 1, 3, 1, 1, 1, 1)
    assert (m.tests_passed, m.tests_failed, m.commits, m.typed_chars, m.ai_chars_inserted, m.error_events) == (
        5, 1, 1, 10, 30, 3)


@pytest.mark.parametrize(("type_", "payload", "expected"), [
    ("build.result", {"success": False}, True), ("build.result", {"success": True}, False),
    ("test.result", {"passed": 1, "failed": 0}, False), ("terminal.command", {"exit_code": -1}, True),
    ("diagnostics.snapshot", {"errors": 1, "warnings": 0}, True), ("file.save", {"file": "x"}, False),
])
def test_is_error_event(type_: str, payload: dict[str, Any], expected: bool) -> None:
    assert is_error_event(NormalizedEvent("e", type_, at(9), payload)) is expected


def test_sums_saturate_instead_of_overflowing() -> None:
    s = Stream()
    for i in range(3):
        s.add(at(9, i), "test.result", passed=2**62, failed=0)
    assert slots(s.events)[at(9)].tests_passed == MAX_SUM


# --- debug sessions -------------------------------------------------------------------------------------


def test_a_session_ends_at_its_stop() -> None:
    s = Stream().add(at(9), "debug.start", debug_session_id="d")
    for minute in range(3, 30, 3):
        s.add(at(9, minute), "debug.breakpoint_hit", debug_session_id="d")
    s.add(at(9, 30), "debug.stop", debug_session_id="d").add(at(9, 33), "window.focus")
    [session] = debug_sessions(prepare(s.events), idle=timedelta(minutes=5))
    assert (session.start, session.end, session.ended_by) == (at(9), at(9, 30), "stop")


def test_a_session_without_activity_ends_where_the_developer_went_idle() -> None:
    # Start, then nothing for 30 minutes: the first idle gap comes before the stop (the published definition).
    s = Stream().add(at(9), "debug.start", debug_session_id="d").add(at(9, 30), "debug.stop", debug_session_id="d")
    [session] = debug_sessions(prepare(s.events), idle=timedelta(minutes=5))
    assert (session.end, session.ended_by) == (at(9), "idle")


def test_an_abandoned_session_ends_at_the_first_idle_gap() -> None:
    # VS Code crashed: no debug.stop. The developer worked 20 more minutes, then came back three days later.
    s = Stream().add(at(9), "debug.start", debug_session_id="d")
    for minute in range(4, 21, 4):
        s.add(at(9, minute), "file.save", file="a.py")
    s.add(at(9, day=13), "file.save", file="a.py")
    [session] = debug_sessions(prepare(s.events), idle=timedelta(minutes=5))
    assert (session.end, session.ended_by) == (at(9, 20), "idle")
    assert total(s.events, "debug_us") == 20 * 60 * S  # not 3 days


def test_a_session_is_capped_at_its_maximum_length() -> None:
    s = Stream().add(at(0), "debug.start", debug_session_id="d")
    for minute in range(4, 12 * 60, 4):
        s.add(at(0) + timedelta(minutes=minute), "window.focus")
    [session] = debug_sessions(prepare(s.events), idle=timedelta(minutes=5), max_session=timedelta(hours=8))
    assert (session.end, session.ended_by) == (at(8), "max_length")


def test_a_session_still_open_lasts_until_the_latest_event() -> None:
    s = Stream().add(at(9), "debug.start", debug_session_id="d").add(at(9, 3), "window.focus")
    [session] = debug_sessions(prepare(s.events), idle=timedelta(minutes=5))
    assert (session.end, session.still_open) == (at(9, 3), True)


def test_overlapping_sessions_are_counted_once_and_split_by_slot() -> None:
    s = (Stream().add(at(9), "debug.start", debug_session_id="a").add(at(9, 10), "debug.start", debug_session_id="b")
         .add(at(9, 20), "debug.stop", debug_session_id="a").add(at(9, 40), "debug.stop", debug_session_id="b"))
    # idle = 1 h here, so the 10- and 20-minute gaps are no idle gaps
    assert debug_intervals(prepare(s.events), idle=timedelta(hours=1)) == [(at(9), at(9, 40))]
    result = slots(s.events, idle=3600)
    assert [result[at(9, m)].debug_us for m in (0, 15, 30)] == [15 * 60 * S, 15 * 60 * S, 10 * 60 * S]


def test_earliest_start_and_first_stop_after_it() -> None:
    s = (Stream().add(at(8, 55), "debug.stop", debug_session_id="d").add(at(9), "debug.start", debug_session_id="d")
         .add(at(9, 2), "debug.start", debug_session_id="d").add(at(9, 4), "debug.stop", debug_session_id="d"))
    [session] = debug_sessions(prepare(s.events), idle=timedelta(minutes=5))
    assert (session.start, session.end) == (at(9), at(9, 4))


def test_ignored_sessions_started_before_the_window() -> None:
    s = Stream().add(at(9), "debug.start", debug_session_id="d").add(at(9, 4), "window.focus")
    assert debug_sessions(prepare(s.events), idle=timedelta(minutes=5), ignored_ids=frozenset({"d"})) == []


def test_debugging_heartbeats_form_runs() -> None:
    s = Stream()
    for minute in (0, 3, 6, 20):
        s.add(at(9, minute), "editor.heartbeat", entity="/a.py", time=0, category="debugging")
    assert debug_intervals(prepare(s.events), idle=timedelta(minutes=5)) == [(at(9), at(9, 6))]


# --- properties -----------------------------------------------------------------------------------------

BASE = datetime(2024, 3, 10, 21, 0, tzinfo=UTC)
SPAN_MS = 14 * 3600 * 1000
counts = st.integers(min_value=0, max_value=50)
debug_ids = st.sampled_from(["d1", "d2", "d3"])
PAYLOADS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "window.focus": st.just({}),
    "file.save": st.sampled_from([{"file": "a.py"}, {"file": "b.go", "language": "go"}]),
    "file.edit": st.fixed_dictionaries({"file": st.just("a.py"), "lines_added": counts, "lines_deleted": counts},
                                       optional={"chars_typed": counts}),
    "build.result": st.fixed_dictionaries({"success": st.booleans()}),
    "test.result": st.fixed_dictionaries({"passed": counts, "failed": st.integers(0, 2)}),
    "debug.start": st.fixed_dictionaries({"debug_session_id": debug_ids}),
    "debug.stop": st.fixed_dictionaries({"debug_session_id": debug_ids}),
    "ai.chat_insert": st.fixed_dictionaries({"chars_inserted": counts}),
    "editor.heartbeat": st.fixed_dictionaries({"entity": st.just("/a.py"), "time": st.just(0),
                                               "category": st.sampled_from(["debugging", "coding"])}),
}


@st.composite
def streams(draw: st.DrawFn) -> list[NormalizedEvent]:
    n = draw(st.integers(0, 40))
    events = []
    for i in range(n):
        type_ = draw(st.sampled_from(sorted(PAYLOADS)))
        # Clusters make equal timestamps and sub-idle gaps common; the span crosses several hours and midnight.
        offset_ms = draw(st.one_of(st.integers(0, SPAN_MS), st.integers(3_590_000, 3_610_000)))
        events.append(NormalizedEvent(f"id{draw(st.integers(0, 10**6)):07d}-{i}", type_,
                                      BASE + timedelta(milliseconds=offset_ms), draw(PAYLOADS[type_]),
                                      seq=draw(st.integers(0, 3)), project=draw(st.sampled_from([None, "p"]))))
    return events


idle_timeouts = st.sampled_from([60, 300, 1800])
max_sessions = st.sampled_from([timedelta(hours=1), timedelta(hours=8)])
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


def _compute(events: list[NormalizedEvent], idle: int, max_session: timedelta, since: datetime = WIDE[0],
             until: datetime = WIDE[1], ignored: frozenset[str] = frozenset()) -> Any:
    return compute_slots(events, since=since, until=until, idle_timeout_seconds=idle, max_debug_session=max_session,
                         ignored_session_ids=ignored)


@PROPERTY_SETTINGS
@given(events=streams(), idle=idle_timeouts, max_session=max_sessions, data=st.data())
def test_order_duplication_and_chunking_do_not_matter(events: list[NormalizedEvent], idle: int,
                                                      max_session: timedelta, data: st.DataObject) -> None:
    expected = _compute(sorted(events, key=order_key), idle, max_session)
    extra = data.draw(st.lists(st.sampled_from(events), max_size=15)) if events else []
    noisy = data.draw(st.permutations(events + extra))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(noisy)), max_size=5)))
    chunks = [noisy[a:b] for a, b in itertools.pairwise([0, *cuts, len(noisy)])]
    assert _compute([e for c in data.draw(st.permutations(chunks)) for e in c], idle, max_session) == expected


@PROPERTY_SETTINGS
@given(events=streams(), idle=idle_timeouts, max_session=max_sessions,
       bounds=st.tuples(st.integers(-4, 60), st.integers(1, 30)))
def test_a_bounded_window_gives_what_the_whole_history_gives(events: list[NormalizedEvent], idle: int,
                                                             max_session: timedelta, bounds: tuple[int, int]) -> None:
    """What models/aggregation.py relies on: slots in [since, until) need only the events within
    max_session + idle around them, plus the ids of sessions that started earlier."""
    since = slot_floor(BASE) + bounds[0] * SLOT
    until = since + bounds[1] * SLOT
    reach = max_session + timedelta(seconds=idle)
    full = _compute(events, idle, max_session)
    window = [e for e in events if since - reach <= e.ts <= until + reach]
    ignored = frozenset(e.payload["debug_session_id"] for e in events
                        if e.type == "debug.start" and e.ts < since - reach)
    bounded = _compute(window, idle, max_session, since, until, ignored)
    assert bounded.metrics == [m for m in full.metrics if since <= m.slot_start < until]
    assert bounded.breakdowns == [b for b in full.breakdowns if since <= b.slot_start < until]


def _reference(events: list[NormalizedEvent], idle: int, max_session: timedelta) -> dict[datetime, dict[str, int]]:
    """A deliberately naive re-statement of the definitions, slot by slot, in microseconds."""
    unique = sorted({e.event_id: e for e in events}.values(), key=order_key)
    gap = timedelta(seconds=idle)
    covered: list[tuple[datetime, datetime]] = []
    for sid in {e.payload["debug_session_id"] for e in unique if e.type == "debug.start"}:
        start = min(e.ts for e in unique if e.type == "debug.start" and e.payload["debug_session_id"] == sid)
        ends = [start + max_session]
        ends += [e.ts for e in unique if e.type == "debug.stop" and e.payload["debug_session_id"] == sid
                 and e.ts >= start][:1]
        after = [e.ts for e in unique if e.ts >= start]
        last = next((a for a, b in itertools.pairwise(after) if b - a > gap), after[-1])
        covered.append((start, min([*ends, last])))
    beats = [e.ts for e in unique if e.type == "editor.heartbeat" and e.payload["category"] == "debugging"]
    covered += [(a, b) for a, b in itertools.pairwise(beats) if b - a <= gap]
    out: dict[datetime, dict[str, int]] = {}
    slot = slot_floor(BASE) - 40 * SLOT
    while slot < BASE + timedelta(hours=40):
        end = slot + SLOT
        step = timedelta(microseconds=1)
        inside = [e for e in unique if slot <= e.ts < end]
        active = sum(max(timedelta(0), min(b.ts, end) - max(a.ts, slot)) // step
                     for a, b in itertools.pairwise(unique) if b.ts - a.ts <= gap)
        # Union of covered intervals within the slot, microsecond by microsecond is too slow: merge first.
        parts = sorted((max(a, slot), min(b, end)) for a, b in covered if min(b, end) > max(a, slot))
        debug, reach = 0, slot
        for a, b in parts:
            a = max(a, reach)
            if b > a:
                debug += (b - a) // step
                reach = b
        if inside or active or debug:
            edits = [e for e in inside if e.type == "file.edit"]
            tests = [e for e in inside if e.type == "test.result"]
            builds = [e for e in inside if e.type == "build.result"]
            out[slot] = {
                "events": len(inside), "active_us": active, "edits": len(edits),
                "lines_added": sum(e.payload["lines_added"] for e in edits),
                "lines_deleted": sum(e.payload["lines_deleted"] for e in edits),
                "saves": sum(e.type == "file.save" for e in inside),
                "error_events": sum(is_error_event(e) for e in inside), "builds": len(builds),
                "build_failures": sum(not e.payload["success"] for e in builds),
                "tests_passed": sum(e.payload["passed"] for e in tests),
                "tests_failed": sum(e.payload["failed"] for e in tests), "debug_us": debug,
                "typed_chars": sum(e.payload.get("chars_typed", 0) for e in edits),
                "ai_chars_inserted": sum(e.payload["chars_inserted"] for e in inside if e.type == "ai.chat_insert"),
                "commits": 0,
            }
        slot = end
    return out


@PROPERTY_SETTINGS
@given(events=streams(), idle=idle_timeouts, max_session=max_sessions)
def test_matches_a_naive_reference(events: list[NormalizedEvent], idle: int, max_session: timedelta) -> None:
    result = _compute(events, idle, max_session)
    assert {m.slot_start: {c: getattr(m, c) for c in SLOT_COLUMNS} for m in result.metrics} == _reference(
        events, idle, max_session)
    for m in result.metrics:
        assert 0 <= m.active_us <= 900 * S and 0 <= m.debug_us <= 900 * S
