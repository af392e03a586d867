"""Invariant 3 (ARCHITECTURE.md): any event that ingest accepts is processed by every job without error.

Events are drawn from the catalog itself (every type of every schema version, every field), with values at
and beyond every limit: extreme lengths, unicode, percent-encodings, NUL, numbers at the edges. Ingest decides
what is accepted; every accepted event then goes through the three jobs' functions on real PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from activity.catalog import (
    MAX_COUNT,
    MAX_EPOCH_NUMBER,
    MAX_INT64,
    MAX_LANGUAGE_LENGTH,
    MAX_PROJECT_LENGTH,
    MAX_SESSION_ID_LENGTH,
    MIN_INT64,
    SUPPORTED_SCHEMA_VERSIONS,
    FieldSpec,
    event_types,
    field_specs,
)
from activity.danger import DangerThresholds
from core.settings import Settings
from models.aggregation import aggregate_batch
from models.danger_detection import detect_for_batch
from models.normalization import normalize_batch
from models.tables import Batch
from tests.support.database import truncate_all
from tests.support.factories import iso, now
from tests.support.pipeline import persist_body

NOW = now()
edge_lengths = [0, 1, MAX_LANGUAGE_LENGTH, MAX_LANGUAGE_LENGTH + 1, MAX_SESSION_ID_LENGTH,
                MAX_SESSION_ID_LENGTH + 1, MAX_PROJECT_LENGTH + 1, 4096, 4097]
nasty = st.sampled_from([
    "file:///a%00b.py", "file:///c%3A/x%2Fy.py", "file://localhost/%E2%82%AC.ts", "file:///%ZZ%2", "%00",
    "C:\\Users\\x\\a.py", "../../etc/passwd", "/w/./a//b.py", "\u0130stanbul.PY", "a\u0000b", "\ud800", "emoji 🐍.py",
    "file:///" + "a/" * 300 + "x.rs", ".", "", " ",
])


def text_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        nasty,
        st.text(max_size=40),
        st.builds(lambda n, c: c * n, st.sampled_from(edge_lengths), st.sampled_from(["x", "é", "漢", "%"])),
    )


def count_values() -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from([0, 1, MAX_COUNT - 1, MAX_COUNT, MAX_COUNT + 1, 2**53, -1, 2**63]),
                     st.integers(0, 10**6), st.just(1.5), st.just(True), st.just("3"))


def value_for(spec: FieldSpec) -> st.SearchStrategy[Any]:
    if spec.kind == "str":
        base = st.sampled_from(spec.choices) | text_values() if spec.choices else text_values()
        return base | st.none() if spec.nullable else base
    if spec.kind == "count":
        return count_values()
    if spec.kind == "int":
        return st.sampled_from([0, -1, 1, 255, MIN_INT64, MAX_INT64, MAX_INT64 + 1]) | st.integers(-5, 5)
    if spec.kind == "bool":
        return st.booleans() | st.just(0)
    return st.sampled_from([0, 1.7e9, -1.0, float(MAX_EPOCH_NUMBER), MAX_EPOCH_NUMBER * 2, 1e308]) | st.floats(
        allow_nan=False, allow_infinity=False)


@st.composite
def catalog_event(draw: st.DrawFn) -> dict[str, Any]:
    version = draw(st.sampled_from(SUPPORTED_SCHEMA_VERSIONS))
    type_ = draw(st.sampled_from(sorted(event_types(version))))
    payload: dict[str, Any] = {}
    for name, spec in field_specs(type_, version).items():
        if spec.required or draw(st.booleans()):
            payload[name] = draw(value_for(spec))
    if draw(st.booleans()):
        payload[draw(st.sampled_from(["workspace", "extra", "language", "project", "debug_session_id"]))] = draw(
            text_values())
    ev: dict[str, Any] = {"event_id": str(uuid.uuid4()), "type": type_, "schema_version": version,
                          "timestamp": iso(NOW - timedelta(seconds=draw(st.integers(0, 3 * 86400)))),
                          "payload": payload}
    if draw(st.booleans()):
        ev["project"] = draw(text_values())
    if draw(st.booleans()):
        ev["session_id"] = draw(text_values())
    return ev


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(events=st.lists(catalog_event(), min_size=1, max_size=25), clones=st.integers(0, 3))
def test_every_accepted_event_is_processed_by_every_job(db, events, clones):
    truncate_all(db)
    # Copies of one accepted event at many instants: sums over many events at every limit.
    events = events + [{**events[0], "event_id": str(uuid.uuid4())} for _ in range(clones * 20)]
    body = {"batch_id": str(uuid.uuid4()), "developer_id": "dev-poison", "sent_at": iso(NOW),
            "schema_version": "1.1", "events": events}
    try:
        outcome = persist_body(db, body, received_at=NOW)
    except Exception as exc:  # a whole-batch rejection (e.g. envelope) is an ApiError, never a crash
        assert type(exc).__name__ == "ApiError", exc
        return
    event(f"accepted {min(len(outcome.accepted_ids), 5)}+ event(s)")
    if not outcome.accepted_ids:
        return
    settings_ = Settings.from_env()
    with db.transaction() as s:
        batch = s.scalars(select(Batch).where(Batch.batch_id == outcome.batch.batch_id,
                                              Batch.developer_id == "dev-poison")).one()
        normalize_batch(s, batch)
        aggregate_batch(s, batch, idle_timeout_seconds=settings_.idle_timeout_seconds)
        result = detect_for_batch(s, batch, correlation_id="prop", thresholds=DangerThresholds(),
                                  freshness=timedelta(hours=24), timezone="Asia/Kathmandu")
    assert "error" not in result, result["error"]
