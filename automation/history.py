"""The execution history: append-only events, each chained to the one before it by SHA-256.

An execution's history is the list of its `HistoryEvent`s in `seq` order (1, 2, 3, ...). Each event carries
the hash of the event before it (`GENESIS_HASH` for the first) and its own hash, the SHA-256 of the canonical
JSON encoding (`canonical_json`) of its body: execution_id, seq, kind, at, data and prev_hash. Changing,
removing or reordering any event breaks a link that `verify` finds; removing the LAST events leaves a valid
shorter chain, so whoever stores the history also stores the head (the last hash and seq, e.g. on the
execution row) and passes it to `verify(events, head=...)`.

Writers build events with `chain_event(previous, kind, data, at)` (previous None for the first). The data of
each kind is JSON; the fold (automation.state) documents what each kind carries. Secrets never appear in
data: executors record configs with substitutions undone (the definition has them) and outputs only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from automation.definition import MAX_HISTORY_EVENTS

GENESIS_HASH = "0" * 64


class EventKind(StrEnum):
    EXECUTION_STARTED = "execution_started"  # {input, trigger, workflow_id, version}
    STEP_SCHEDULED = "step_scheduled"  # {key, attempt}: a task for this attempt was sent
    STEP_STARTED = "step_started"  # {key, attempt, fire_at? (wait), items? (for_each)}
    STEP_SUCCEEDED = "step_succeeded"  # {key, attempt, output}
    STEP_FAILED = "step_failed"  # {key, attempt, error: {kind, message, http_status?}}
    STEP_RETRIED = "step_retried"  # {key, attempt (the next one), not_before}
    STEP_SKIPPED = "step_skipped"  # {key, reason}
    WAIT_FIRED = "wait_fired"  # {key, attempt}
    EXECUTION_CANCELLED = "execution_cancelled"  # {reason}
    EXECUTION_RESUMED = "execution_resumed"  # {reason}: POST /retry of a failed execution
    EXECUTION_FINISHED = "execution_finished"  # {status: succeeded|failed, output?, error?}


@dataclass(frozen=True)
class HistoryEvent:
    execution_id: str
    seq: int
    kind: EventKind
    at: datetime  # aware; encoded in UTC
    data: Mapping[str, Any]
    prev_hash: str
    hash: str

    def body(self) -> dict[str, Any]:
        return _body(self.execution_id, self.seq, self.kind, self.at, self.data, self.prev_hash)

    def to_json(self) -> dict[str, Any]:
        """The event as stored/exported/served (GET /api/executions/<id>/history, NDJSON export)."""
        return {**self.body(), "hash": self.hash}


@dataclass(frozen=True)
class BrokenLink:
    seq: int  # the seq of the first event that does not check out (or the expected one, where missing)
    index: int  # its position in the list given to verify
    reason: str


class HistoryLimitExceeded(Exception):
    """An execution would get more than MAX_HISTORY_EVENTS events: the executor fails it instead."""


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no whitespace, UTF-8, no NaN/Infinity."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _timestamp(at: datetime) -> str:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("history times must be timezone-aware")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _body(execution_id: str, seq: int, kind: str, at: datetime, data: Mapping[str, Any],
          prev_hash: str) -> dict[str, Any]:
    return {"execution_id": execution_id, "seq": seq, "kind": str(kind), "at": _timestamp(at), "data": dict(data),
            "prev_hash": prev_hash}


def event_hash(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


def chain_event(previous: HistoryEvent | None, kind: EventKind, data: Mapping[str, Any], at: datetime, *,
                execution_id: str | None = None) -> HistoryEvent:
    """The next event after `previous` (None: the first event, which needs `execution_id`)."""
    if previous is None:
        if execution_id is None:
            raise ValueError("the first event needs an execution_id")
        seq, prev_hash = 1, GENESIS_HASH
    else:
        execution_id, seq, prev_hash = previous.execution_id, previous.seq + 1, previous.hash
    if seq > MAX_HISTORY_EVENTS:
        raise HistoryLimitExceeded(f"more than {MAX_HISTORY_EVENTS} history events")
    body = _body(execution_id, seq, kind, at, data, prev_hash)
    return HistoryEvent(execution_id, seq, EventKind(kind), at, dict(data), prev_hash, event_hash(body))


def verify(events: Sequence[HistoryEvent], head: tuple[int, str] | None = None) -> BrokenLink | None:
    """The first broken link of an execution's history, or None when it checks out.

    `head` = (seq, hash) of the last event as recorded elsewhere: with it, a history cut short is found too.
    """
    prev_hash = GENESIS_HASH
    execution_id = events[0].execution_id if events else None
    for index, event in enumerate(events):
        expected_seq = index + 1
        if event.execution_id != execution_id:
            return BrokenLink(event.seq, index, "belongs to another execution")
        if event.seq != expected_seq:
            return BrokenLink(expected_seq, index, f"seq {event.seq} where {expected_seq} was expected")
        if event.prev_hash != prev_hash:
            return BrokenLink(event.seq, index, "prev_hash is not the previous event's hash")
        if event_hash(event.body()) != event.hash:
            return BrokenLink(event.seq, index, "hash does not match the event's content")
        prev_hash = event.hash
    if head is not None:
        head_seq, head_hash = head
        if len(events) != head_seq or prev_hash != head_hash:
            return BrokenLink(len(events) + 1, len(events),
                              f"history ends at seq {len(events)}, the head says {head_seq}")
    return None
