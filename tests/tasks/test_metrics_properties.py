"""Metrics are exact under any delivery (invariant 2 of ARCHITECTURE.md).

One developer's event stream is split into batches, some batches are resent,
some events are copied into other batches, and the batches are stored and
aggregated one by one in a random order (with late batches and a debug.stop
that arrives after its start), the way the aggregation task would see them.
Whatever happened, the stored slots and breakdowns must equal `compute_slots`
over every stored event in one pass: every slot, every column. The job reads
only a bounded window around each batch, so this also proves the window is
wide enough.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from activity.metrics import SLOT_COLUMNS, compute_slots, slot_floor
from models.aggregation import aggregate_batch
from models.db import Database
from models.event_reader import developer_events
from models.tables import ActivityBreakdown, MetricSlot
from tests.support.database import truncate_all
from tests.support.factories import batch, iso
from tests.support.pipeline import persist_body, stored_batch

IDLE = 300
DEVELOPER = "dev-prop"
# Fixed per run; every event lies 2-3 days back (inside the 30-day limit) and the stream crosses a UTC midnight.
NOW = datetime.now(UTC).replace(microsecond=0)
BASE = (NOW - timedelta(days=3)).replace(hour=23, minute=0, second=0)
MIDNIGHT = BASE + timedelta(hours=1)

counts = st.integers(min_value=0, max_value=50)

PAYLOADS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "file.edit": st.fixed_dictionaries(
        {"file": st.sampled_from(["src/a.py", "b.ts", "README.md"]), "lines_added": counts, "lines_deleted": counts},
        optional={"chars_typed": counts}),
    "file.save": st.fixed_dictionaries({"file": st.sampled_from(["src/a.py", "b.ts"])}),
    "build.result": st.fixed_dictionaries({"success": st.booleans()}, optional={"duration_ms": counts}),
    "test.result": st.fixed_dictionaries({"passed": counts, "failed": st.integers(0, 3)}),
    "terminal.command": st.fixed_dictionaries({"exit_code": st.integers(-1, 2)}),
    "ai.suggestion_accepted": st.fixed_dictionaries({"chars_inserted": counts}),
    "ai.chat_insert": st.fixed_dictionaries({"chars_inserted": counts}),
    "git.commit": st.fixed_dictionaries({}, optional={"files_changed": counts}),
    "diagnostics.snapshot": st.fixed_dictionaries({"errors": st.integers(0, 3), "warnings": counts}),
    # Runs of "debugging" heartbeats count as debug time, like debug.start/stop.
    "editor.heartbeat": st.fixed_dictionaries({"entity": st.just("src/a.py"), "time": st.just(1.7e9),
                                               "category": st.sampled_from(["debugging", "coding", None])}),
}
# Schema 1.0 shapes, upcast on the way (the expected side upcasts with the same pure function).
PAYLOADS_1_0: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "file.edit": st.fixed_dictionaries({"file": st.just("old.py"), "lines_changed": counts}),
    "ai.completion": st.fixed_dictionaries({"accepted": st.booleans(), "chars": counts}),
}


def _event(event_id: uuid.UUID, type_: str, ts: datetime, payload: dict[str, Any],
           version: str | None = None) -> dict[str, Any]:
    ev: dict[str, Any] = {"event_id": str(event_id), "type": type_, "timestamp": iso(ts), "payload": payload}
    if version:
        ev["schema_version"] = version
    return ev


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[tuple[int, list[dict[str, Any]]]], list[int]]:
    """(the stream, the posts in arrival order as (batch index, events), batches re-aggregated at the end)."""
    rnd = draw(st.randoms(use_true_random=False))
    # Unique ids in an order unrelated to the timestamps (ties between equal timestamps are broken by id).
    free_ids = [uuid.UUID(int=k + 1, version=4) for k in draw(st.permutations(range(40)))]

    def new_id() -> uuid.UUID:
        return free_ids.pop()

    stream: list[dict[str, Any]] = []
    offset = timedelta(0)
    for _ in range(draw(st.integers(3, 25))):
        # Gaps around the idle timeout matter most: below, around and well above it.
        offset += timedelta(seconds=draw(st.one_of(st.integers(0, 200), st.integers(250, 350),
                                                   st.integers(400, 1800))),
                            milliseconds=draw(st.integers(0, 999)))
        if draw(st.integers(0, 9)) == 0:
            type_ = draw(st.sampled_from(sorted(PAYLOADS_1_0)))
            stream.append(_event(new_id(), type_, BASE + offset, draw(PAYLOADS_1_0[type_]), "1.0"))
        else:
            type_ = draw(st.sampled_from(sorted(PAYLOADS)))
            stream.append(_event(new_id(), type_, BASE + offset, draw(PAYLOADS[type_])))
    span = offset
    # Debug sessions: always one with a stop (it is delivered late, below), maybe more, maybe unmatched.
    debug: list[tuple[int, int | None]] = []
    for n in range(draw(st.integers(1, 3))):
        start = BASE + timedelta(seconds=draw(st.integers(0, int(span.total_seconds()))))
        stop = None if n and draw(st.booleans()) else start + timedelta(seconds=draw(st.integers(0, 7200)))
        sid = f"debug-{n}"
        stream.append(_event(new_id(), "debug.start", start, {"debug_session_id": sid}))
        debug.append((len(stream) - 1, None))
        if stop is not None:
            stream.append(_event(new_id(), "debug.stop", min(stop, NOW - timedelta(hours=1)),
                                 {"debug_session_id": sid}))
            debug[-1] = (debug[-1][0], len(stream) - 1)

    # Split a random permutation into 2..6 batches, arriving in a random order.
    order = draw(st.permutations(range(len(stream))))
    n_batches = draw(st.integers(2, min(6, len(stream))))
    cuts = sorted(draw(st.lists(st.integers(1, len(stream) - 1), min_size=n_batches - 1,
                                max_size=n_batches - 1, unique=True)))
    bounds = [0, *cuts, len(stream)]
    batches = [list(order[a:b]) for a, b in itertools.pairwise(bounds)]
    arrival = draw(st.permutations(range(n_batches)))
    first, last = arrival[0], arrival[-1]

    def move(index: int, to: int) -> None:
        for members in batches:
            if index in members:
                members.remove(index)
        batches[to].append(index)

    # A debug.stop in a later batch than its start, and the earliest event in the very last batch.
    start_index, stop_index = debug[0]
    move(start_index, first)
    assert stop_index is not None
    move(stop_index, last)
    others = [i for i in range(len(stream)) if i not in (start_index, stop_index)]
    move(min(others, key=lambda i: datetime.fromisoformat(stream[i]["timestamp"])), last)
    # Copies of some events inside other batches (or the same batch).
    for index, to in draw(st.lists(st.tuples(st.integers(0, len(stream) - 1), st.integers(0, n_batches - 1)),
                                   max_size=6)):
        batches[to].append(index)
    # Whole batches resent (same batch_id, same content) at any later or earlier point.
    posts = [b for b in arrival if batches[b]]
    for b in draw(st.lists(st.sampled_from(posts), max_size=3)):
        posts.insert(draw(st.integers(0, len(posts))), b)
    for members in batches:
        rnd.shuffle(members)
    replays = draw(st.lists(st.sampled_from(posts), max_size=2))
    return stream, [(b, [stream[i] for i in batches[b]]) for b in posts], replays


def expected_metrics(db: Database) -> dict[str, Any]:
    """One pass of the pure definition over every stored event of the developer."""
    with db.session() as s:
        events = developer_events(s, DEVELOPER)
    result = compute_slots(events, since=slot_floor(BASE - timedelta(days=2)),
                           until=slot_floor(NOW + timedelta(days=1)), idle_timeout_seconds=IDLE)
    return {"slots": {m.slot_start: {c: getattr(m, c) for c in SLOT_COLUMNS} for m in result.metrics},
            "breakdowns": {(b.slot_start, b.dimension, b.key): b.active_us for b in result.breakdowns},
            "events": len(events)}


def stored_metrics(db: Database) -> dict[str, Any]:
    with db.session() as s:
        rows = s.scalars(select(MetricSlot).where(MetricSlot.developer_id == DEVELOPER)).all()
        parts = s.scalars(select(ActivityBreakdown).where(ActivityBreakdown.developer_id == DEVELOPER)).all()
        return {"slots": {r.slot_start.astimezone(UTC): {c: getattr(r, c) for c in SLOT_COLUMNS} for r in rows},
                "breakdowns": {(p.slot_start.astimezone(UTC), p.dimension, p.key): p.active_us for p in parts},
                "events": sum(r.events for r in rows)}


def aggregate(db: Database, batch_id: uuid.UUID) -> None:
    with db.transaction() as s:
        stored = stored_batch(s, batch_id)
        assert stored is not None
        aggregate_batch(s, stored, idle_timeout_seconds=IDLE)


def deliver(db: Database, posts: list[tuple[int, list[dict[str, Any]]]], replays: list[int]) -> None:
    batch_ids = {b: uuid.UUID(int=b + 1, version=4) for b, _ in posts}
    for b, events in posts:
        body = batch(events, developer_id=DEVELOPER, batch_id=str(batch_ids[b]), sent_at=NOW)
        outcome = persist_body(db, body, received_at=NOW)
        assert outcome.kind in ("stored", "duplicate_batch"), outcome.kind
        if outcome.kind == "stored" and outcome.accepted_ids:
            aggregate(db, batch_ids[b])
    # Re-runs of earlier batches' aggregation after later ones (a retry, the sweeper, a replay).
    for b in replays:
        aggregate(db, batch_ids[b])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=deliveries())
def test_metrics_equal_a_single_pass_over_the_deduplicated_stream(db, case):
    stream, posts, replays = case
    truncate_all(db)
    deliver(db, posts, replays)
    expected = expected_metrics(db)
    assert expected["events"] == len({e["event_id"] for e in stream})
    assert stored_metrics(db) == expected


def test_late_batches_and_a_late_debug_stop(db):
    """A fixed delivery: today's batch first, then yesterday's, then the stop of a debug session."""
    truncate_all(db)
    d = BASE - timedelta(hours=3)
    ids = iter(uuid.UUID(int=i, version=4) for i in range(1, 100))
    # Breakpoints every 4 minutes keep the developer active (no idle gap) until the stop at 90 minutes.
    early = [_event(next(ids), "debug.start", d, {"debug_session_id": "s"})] + [
        _event(next(ids), "debug.breakpoint_hit", d + timedelta(minutes=m), {"debug_session_id": "s"})
        for m in range(4, 120, 4)]
    later = [_event(next(ids), "file.save", d + timedelta(hours=5), {"file": "a.py"}),
             _event(next(ids), "git.commit", d + timedelta(hours=5, seconds=100), {})]
    stop = [_event(next(ids), "debug.stop", d + timedelta(minutes=90), {"debug_session_id": "s"}), early[1]]
    deliver(db, [(1, later), (0, early), (2, stop), (1, later)], replays=[0])
    actual = stored_metrics(db)
    assert actual == expected_metrics(db)
    assert sum(v["debug_us"] for v in actual["slots"].values()) == 90 * 60 * 10**6


def test_a_late_event_just_after_midnight_reopens_the_previous_days_gap(db):
    """The new event's predecessor (23:58) gains active time before midnight, split at the slot boundary."""
    truncate_all(db)
    ids = iter(uuid.UUID(int=i, version=4) for i in range(1, 100))
    stored = [_event(next(ids), "file.save", MIDNIGHT - timedelta(minutes=2), {"file": "a.py"}),
              _event(next(ids), "file.save", MIDNIGHT + timedelta(minutes=30), {"file": "a.py"})]
    late = [_event(next(ids), "file.save", MIDNIGHT + timedelta(minutes=1), {"file": "a.py"})]
    deliver(db, [(0, stored), (1, late)], replays=[])
    actual = stored_metrics(db)
    assert actual == expected_metrics(db)
    assert actual["slots"][MIDNIGHT - timedelta(minutes=15)]["active_us"] == 120 * 10**6
    assert actual["slots"][MIDNIGHT]["active_us"] == 60 * 10**6


def test_an_abandoned_debug_session_does_not_reach_into_later_batches(db):
    """Defect 1: a debug.start without a stop (the editor crashed) ended at the developer's LAST event, so every
    hour until the next day counted as debugging and every later batch re-read the whole debug history."""
    truncate_all(db)
    ids = iter(uuid.UUID(int=i, version=4) for i in range(1, 100))
    evening = [_event(next(ids), "debug.start", MIDNIGHT - timedelta(hours=1), {"debug_session_id": "open"}),
               _event(next(ids), "file.save", MIDNIGHT - timedelta(minutes=57), {"file": "a.py"})]
    morning = [_event(next(ids), "file.save", MIDNIGHT + timedelta(hours=5), {"file": "a.py"})]
    deliver(db, [(0, evening), (1, morning)], replays=[])
    actual = stored_metrics(db)
    assert actual == expected_metrics(db)
    assert sum(v["debug_us"] for v in actual["slots"].values()) == 180 * 10**6  # 3 minutes, not 6 hours
    # The morning batch's recompute covered minutes around its own event, not the evening.
    with db.session() as s:
        from models.aggregation import affected_range

        rng = affected_range(s, DEVELOPER, MIDNIGHT + timedelta(hours=5), MIDNIGHT + timedelta(hours=5),
                             idle=timedelta(seconds=IDLE))
    assert rng.since >= MIDNIGHT + timedelta(hours=4, minutes=45)


def test_a_gap_filled_later_extends_a_session_within_the_bounded_window(db):
    truncate_all(db)
    ids = iter(uuid.UUID(int=i, version=4) for i in range(1, 100))
    start = MIDNIGHT - timedelta(hours=2)
    first = [_event(next(ids), "debug.start", start, {"debug_session_id": "d"})] + [
        _event(next(ids), "debug.breakpoint_hit", start + timedelta(minutes=m), {"debug_session_id": "d"})
        for m in (4, 8, 20, 24)]
    fill = [_event(next(ids), "debug.breakpoint_hit", start + timedelta(minutes=m), {"debug_session_id": "d"})
            for m in (12, 16)]
    deliver(db, [(0, first)], replays=[])
    assert sum(v["debug_us"] for v in stored_metrics(db)["slots"].values()) == 8 * 60 * 10**6
    deliver(db, [(1, fill)], replays=[])
    actual = stored_metrics(db)
    assert actual == expected_metrics(db)
    assert sum(v["debug_us"] for v in actual["slots"].values()) == 24 * 60 * 10**6
