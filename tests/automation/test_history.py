"""The hash chain finds any single modified, removed or reordered event."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from automation.history import (
    GENESIS_HASH,
    EventKind,
    HistoryEvent,
    canonical_json,
    chain_event,
    event_hash,
    verify,
)

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=8)


@st.composite
def histories(draw: st.DrawFn) -> list[HistoryEvent]:
    count = draw(st.integers(2, 12))
    events: list[HistoryEvent] = []
    for i in range(count):
        kind = draw(st.sampled_from(list(EventKind)))
        data = {"key": f"s{draw(st.integers(0, 3))}", "attempt": 1, "value": draw(json_values)}
        events.append(chain_event(events[-1] if events else None, kind, data, T0 + timedelta(seconds=i),
                                  execution_id="exec-1"))
    return events


def _head(events: list[HistoryEvent]) -> tuple[int, str]:
    return events[-1].seq, events[-1].hash


@given(histories())
def test_an_untouched_history_verifies(events: list[HistoryEvent]) -> None:
    assert events[0].prev_hash == GENESIS_HASH
    assert verify(events, _head(events)) is None


@given(histories(), st.data())
def test_a_modified_event_is_found(events: list[HistoryEvent], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(events) - 1))
    change = data.draw(st.sampled_from(["data", "kind", "at", "seq"]))
    event = events[i]
    if change == "data":
        tampered = dataclasses.replace(event, data={**event.data, "value": ["tampered", event.data["value"]]})
    elif change == "kind":
        other = next(k for k in EventKind if k != event.kind)
        tampered = dataclasses.replace(event, kind=other)
    elif change == "at":
        tampered = dataclasses.replace(event, at=event.at + timedelta(microseconds=1))
    else:
        tampered = dataclasses.replace(event, seq=event.seq + 100)
    broken = verify([*events[:i], tampered, *events[i + 1:]], _head(events))
    assert broken is not None and broken.index == i


@given(histories(), st.data())
def test_a_removed_event_is_found(events: list[HistoryEvent], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(events) - 1))
    broken = verify([*events[:i], *events[i + 1:]], _head(events))
    assert broken is not None and broken.index == i


@given(histories(), st.data())
def test_reordered_events_are_found(events: list[HistoryEvent], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(events) - 2))
    j = data.draw(st.integers(i + 1, len(events) - 1))
    swapped = list(events)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    broken = verify(swapped, _head(events))
    assert broken is not None and broken.index == i


def test_a_rechained_forgery_is_caught_by_the_head() -> None:
    events = [chain_event(None, EventKind.EXECUTION_STARTED, {"input": {}}, T0, execution_id="x")]
    events.append(chain_event(events[-1], EventKind.EXECUTION_FINISHED, {"status": "succeeded"}, T0))
    forged = [events[0], chain_event(events[0], EventKind.EXECUTION_FINISHED, {"status": "failed"}, T0)]
    assert verify(forged) is None  # a chain alone cannot tell: the stored head can
    assert verify(forged, _head(events)) is not None


def test_canonical_json_is_one_encoding_per_value() -> None:
    assert canonical_json({"b": 1, "a": [1, "é"]}) == canonical_json({"a": [1, "é"], "b": 1})
    assert canonical_json({"a": "é"}) == '{"a":"é"}'.encode()
    assert chain_event(None, EventKind.EXECUTION_STARTED, {"x": 1}, T0, execution_id="x").to_json()["at"] == (
        "2026-11-27T12:00:00.000000+00:00")


@given(histories(), st.data())
def test_a_modified_event_with_its_successor_patched_is_found(events: list[HistoryEvent], data: st.DataObject) -> None:
    """Re-hashing the changed event and pointing the next one at it is not enough: that changes the next hash."""
    i = data.draw(st.integers(0, len(events) - 1))
    changed = dataclasses.replace(events[i], data={**events[i].data, "value": "tampered"})
    changed = dataclasses.replace(changed, hash=event_hash(changed.body()))
    forged = [*events[:i], changed, *events[i + 1:]]
    if i + 1 < len(events):
        forged[i + 1] = dataclasses.replace(events[i + 1], prev_hash=changed.hash)
    broken = verify(forged, _head(events))
    assert broken is not None and broken.index in (i + 1, len(events))
