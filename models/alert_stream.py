"""The alert stream's order: which alerts a developer's stream sends, and from where a reconnecting client resumes.

An alert is announced (new, or escalated, and not stale) by the transaction that stores that change; the row
keeps that transaction's id (`announced_txid`, PostgreSQL's 64-bit `pg_current_xact_id()`). A stream position is
(txid, alert_id), and a stream sends the alerts after its position in that order.

Transaction ids are handed out when a transaction first writes, not when it commits: a transaction with a
smaller id may commit after one with a larger id, and a cursor that had moved past the larger one would skip it
for ever. So a reader only sends alerts whose txid is below the xmin of its snapshot (every transaction with a
smaller id has ended, so nothing can still appear behind the cursor) and waits for the rest: an alert reaches
the stream once every transaction that began writing before it has ended (normally milliseconds). This is the
known way to read a PostgreSQL table as an ordered log without gaps.

PostgreSQL is the only source: whoever publishes the Redis wake-ups (and whether they arrive at all), a client
resuming from a position receives every alert announced after it.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

from sqlalchemy import BigInteger, Text, cast, func, select, tuple_
from sqlalchemy.orm import Session

from models.tables import Alert

# The announcing transaction's id, evaluated by the INSERT or UPDATE that writes the row.
_CURRENT_TXID = cast(cast(func.pg_current_xact_id(), Text), BigInteger)
# Every transaction id below this has ended (committed and visible, or rolled back).
_SNAPSHOT_XMIN = cast(cast(func.pg_snapshot_xmin(func.pg_current_snapshot()), Text), BigInteger)
_LAST_UUID = uuid.UUID(int=(1 << 128) - 1)
_POSITION_RE = re.compile(r"^(\d{1,20})-([0-9a-fA-F-]{36})$")


@dataclass(frozen=True, order=True)
class StreamPosition:
    txid: int
    alert_id: uuid.UUID

    def __str__(self) -> str:
        """The SSE `id` of the alert at this position (what a client sends back as `Last-Event-ID`)."""
        return f"{self.txid}-{self.alert_id}"

    @classmethod
    def parse(cls, text: str) -> StreamPosition | None:
        match = _POSITION_RE.match(text.strip())
        if match is None:
            return None
        txid = int(match.group(1))
        if txid >= 1 << 63:  # not a bigint: no transaction ever had it
            return None
        try:
            return cls(txid, uuid.UUID(match.group(2)))
        except ValueError:
            return None


def mark_announced(alert: Alert) -> None:
    """Record that the current transaction announces `alert` (set where the change is decided to be news)."""
    alert.announced_txid = _CURRENT_TXID  # a SQL expression, rendered by the flush


def start_position(session: Session) -> StreamPosition:
    """Where a new stream (no Last-Event-ID) starts: after everything announced by transactions already ended.

    Alerts of transactions still running, or ended after their ids but before this snapshot's xmin moved, come
    next: a new stream may repeat an alert announced a moment before it opened, never miss one after.
    """
    xmin = session.execute(select(_SNAPSHOT_XMIN)).scalar_one()
    return StreamPosition(int(xmin) - 1, _LAST_UUID)


def position_of(session: Session, developer_id: str, alert_id: uuid.UUID) -> StreamPosition | None:
    """The position of an announced alert (clients that kept a bare alert id as their last event id)."""
    txid = session.execute(select(Alert.announced_txid).where(
        Alert.alert_id == alert_id, Alert.developer_id == developer_id)).scalar_one_or_none()
    return None if txid is None else StreamPosition(int(txid), alert_id)


def announced_after(session: Session, developer_id: str, after: StreamPosition, *, limit: int = 100
                    ) -> tuple[list[tuple[StreamPosition, Alert]], bool]:
    """The developer's alerts announced after `after` that may be sent now, in stream order, and whether more
    are waiting (a page was full, or an announcing transaction with a smaller id than another is still open)."""
    # Read first, in its own statement: a later statement's snapshot sees every transaction below it as ended.
    xmin = int(session.execute(select(_SNAPSHOT_XMIN)).scalar_one())
    rows = session.execute(
        select(Alert).where(
            Alert.developer_id == developer_id,
            Alert.announced_txid.is_not(None),
            tuple_(Alert.announced_txid, Alert.alert_id) > tuple_(after.txid, after.alert_id),
        ).order_by(Alert.announced_txid, Alert.alert_id).limit(limit)
    ).scalars().all()
    ready: list[tuple[StreamPosition, Alert]] = []
    for alert in rows:
        txid = int(alert.announced_txid or 0)
        if txid >= xmin:
            return ready, True
        ready.append((StreamPosition(txid, alert.alert_id), alert))
    return ready, len(rows) == limit
