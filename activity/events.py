"""Plain value types shared by the pure rules, and the one way to order a developer's events."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class NormalizedEvent:
    """One stored event after upcasting to the current schema (1.1).

    `ts` is the skew-corrected timestamp in UTC (timezone-aware);
    `utc_offset_minutes` is the offset the client wrote in its own timestamp,
    which is the developer's local time zone at that moment. `received_at` and
    `seq` (the batch's arrival time and the event's index in it) break ties
    between equal timestamps, so in-batch order is kept. `project` is the
    event's top-level project (schema 1.1) or a heartbeat's payload project.
    """

    event_id: str
    type: str
    ts: datetime
    payload: dict[str, Any] = field(default_factory=dict)
    utc_offset_minutes: int = 0
    session_id: str | None = None
    received_at: datetime = EPOCH
    seq: int = 0
    project: str | None = None


def order_key(event: NormalizedEvent) -> tuple[datetime, datetime, int, str]:
    """(corrected time, batch received order, position in the batch, id): equal times keep batch order."""
    return (event.ts, event.received_at, event.seq, event.event_id)


def _content_key(event: NormalizedEvent) -> tuple[Any, ...]:
    payload = json.dumps(event.payload, sort_keys=True, default=repr)
    return (event.ts, event.type, payload, event.utc_offset_minutes, event.session_id or "", event.project or "")


def _require_aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


class Prepared(list[NormalizedEvent]):
    """A list that `prepare` made: deduplicated, in UTC, in order. Preparing it again returns it as it is."""


def prepare(events: Iterable[NormalizedEvent]) -> list[NormalizedEvent]:
    """One event per event_id, times in UTC, sorted by `order_key`.

    Copies of an event are normally identical; if two differ anyway, the one with the smallest content wins
    whatever the arrival order, so no rule ever depends on the order of delivery.
    """
    if isinstance(events, Prepared):
        return events  # every rule prepares its input; detect() prepares once for all of them
    chosen: dict[str, NormalizedEvent] = {}
    for event in events:
        _require_aware(f"ts of event {event.event_id!r}", event.ts)
        if event.ts.tzinfo is not UTC:  # ISO keys and buckets must not depend on the zone given
            event = replace(event, ts=event.ts.astimezone(UTC))
        current = chosen.get(event.event_id)
        if current is None or (current != event and _content_key(event) < _content_key(current)):
            chosen[event.event_id] = event
    return Prepared(sorted(chosen.values(), key=order_key))
