"""The alert stream's order on the real PostgreSQL: a cursor never skips an alert whose transaction commits late."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import text

from models.alert_stream import StreamPosition, announced_after, start_position
from tests.support.alerts import base_time, seed


def _ids(rows) -> list[str]:
    return [str(alert.alert_id) for _, alert in rows]


def test_positions_round_trip_and_reject_garbage():
    position = StreamPosition(123456789, uuid.uuid4())
    assert StreamPosition.parse(str(position)) == position
    for garbage in ("", "abc", "12-not-a-uuid", f"-1-{uuid.uuid4()}", f"1-{uuid.uuid4()}x",
                    f"{1 << 63}-{uuid.uuid4()}"):
        assert StreamPosition.parse(garbage) is None


def test_announced_after_returns_alerts_after_the_position_in_order(clean_db):
    developer = f"dev-{uuid.uuid4().hex[:8]}"
    with clean_db.transaction() as s:
        start = start_position(s)
    first = seed(clean_db, developer, "excessive_errors", "high", base_time())
    second = seed(clean_db, developer, "no_break", "medium", base_time())
    seed(clean_db, "someone-else", "no_break", "medium", base_time())
    # Stale episodes are stored, never announced.
    seed(clean_db, developer, "late_night_work", "low", base_time() - timedelta(days=3), detected_at=base_time())
    with clean_db.transaction() as s:
        rows, more = announced_after(s, developer, start)
        assert (_ids(rows), more) == ([first["alert_id"], second["alert_id"]], False)
        rows_after_first, _ = announced_after(s, developer, rows[0][0])
        assert _ids(rows_after_first) == [second["alert_id"]]
        assert announced_after(s, developer, rows[1][0]) == ([], False)
        page, more = announced_after(s, developer, start, limit=1)
        assert (_ids(page), more) == ([first["alert_id"]], True)


def test_an_alert_committed_late_is_not_skipped(clean_db):
    """Transaction A takes its id first and commits last: the reader holds B back until A has ended, then sends
    A before B. Ordering by commit-blind keys (ids, sequences, timestamps) would send B and skip A for ever."""
    developer = f"dev-{uuid.uuid4().hex[:8]}"
    with clean_db.transaction() as s:
        start = start_position(s)
    late = clean_db.session()
    late.begin()
    try:
        # A: writes (and so takes its transaction id) first, stays open.
        late.execute(text("SELECT pg_current_xact_id()"))
        from activity.danger import Detection
        from models.danger_detection import store_detections
        from tests.support.alerts import FRESH

        end = base_time()
        detection = Detection("no_break", "high", end - timedelta(hours=3), end, "late-one", {"measured": 1}, "Rest.")
        store_detections(late, developer, [detection], batch_id=uuid.uuid4(), correlation_id="late", now=end,
                         freshness=FRESH)
        # B: a later transaction, committed at once.
        early = seed(clean_db, developer, "excessive_errors", "high", end)
        with clean_db.transaction() as s:
            rows, more = announced_after(s, developer, start)
        assert (rows, more) == ([], True), "B must wait while A, with a smaller transaction id, is open"
        late.commit()
    finally:
        late.close()
    with clean_db.transaction() as s:
        rows, more = announced_after(s, developer, start)
        patterns = [alert.pattern for _, alert in rows]
        assert (patterns, more) == (["no_break", "excessive_errors"], False)
        assert str(rows[1][1].alert_id) == early["alert_id"]
