"""Properties of the ingestion edge over generated batches, against the real PostgreSQL.

(1) Any mix of valid, invalid, duplicate and out-of-order events is stored exactly once, with counts that
    add up and match a plain reference model.
(2) Resending any batch, any number of times, with another sent_at, changes nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from app.auth import clear_token_cache
from models.tokens import create_token
from tests.support.database import TABLES, truncate_all
from tests.support.factories import auth, batch, event, iso, now

URL = "/api/workflow/events/orchestrate"

VALID_KINDS = ("save", "edit", "v10_edit", "ai")
INVALID_KINDS = ("missing_field", "unknown_type", "bad_version", "future", "too_old", "not_object")

PROPERTY_SETTINGS = settings(max_examples=25, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])

event_specs = st.tuples(
    st.integers(0, 7),  # which id of the example's pool: a small pool makes duplicates common
    st.sampled_from(VALID_KINDS + INVALID_KINDS),
    st.integers(1, 20 * 24 * 60),  # minutes before the client's send time: any order, up to 20 days late
)
batch_specs = st.tuples(
    st.lists(event_specs, min_size=1, max_size=10),
    st.sampled_from([timedelta(0), timedelta(hours=-2), timedelta(hours=3), timedelta(minutes=-7)]),  # clock skew
)
scenarios = st.tuples(st.lists(st.uuids(version=4), min_size=8, max_size=8, unique=True),
                      st.lists(batch_specs, min_size=1, max_size=4))


def build_event(kind: str, event_id: str, sent_at: datetime, minutes_ago: int) -> Any:
    ts = sent_at - timedelta(minutes=minutes_ago)
    if kind == "save":
        return event("file.save", ts, event_id=event_id, file=f"f{minutes_ago}.py")
    if kind == "edit":
        return event("file.edit", ts, event_id=event_id, file="a.py", lines_added=minutes_ago % 50, lines_deleted=1,
                     unknown_extra={"kept": minutes_ago})
    if kind == "v10_edit":
        return event("file.edit", ts, event_id=event_id, version="1.0", file="a.py", lines_changed=3)
    if kind == "ai":
        return event("ai.suggestion_accepted", ts, event_id=event_id, chars_inserted=minutes_ago)
    if kind == "missing_field":
        return event("file.edit", ts, event_id=event_id, file="a.py", lines_added=1)
    if kind == "unknown_type":
        return event("file.teleport", ts, event_id=event_id)
    if kind == "bad_version":
        return event("file.save", ts, event_id=event_id, version="2.0")
    if kind == "future":
        return event("file.save", sent_at + timedelta(minutes=10), event_id=event_id)
    if kind == "too_old":
        return event("file.save", sent_at - timedelta(days=31), event_id=event_id)
    assert kind == "not_object"
    return "not an event"


@dataclass
class Expected:
    """What a plain in-order reading of the batches says must happen."""

    status: int = 202
    accepted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected_indexes: list[int] = field(default_factory=list)


def make_batches(scenario: Any) -> list[tuple[dict[str, Any], list[str]]]:
    """The request bodies, each with the kind of every event (what the reference model reads)."""
    pool, specs = scenario
    out = []
    for events, skew in specs:
        sent_at = now() + skew
        raws = [build_event(kind, str(pool[i]), sent_at, minutes) for i, kind, minutes in events]
        out.append((batch(raws, sent_at=sent_at), [kind for _, kind, _ in events]))
    return out


def reference(batches: list[tuple[dict[str, Any], list[str]]]) -> tuple[list[Expected], dict[str, tuple]]:
    stored: dict[str, tuple[str, int, Any]] = {}  # event_id -> (batch_id, seq, raw)
    out = []
    for body, kinds in batches:
        exp = Expected()
        seen: set[str] = set()
        new: dict[str, tuple[str, int, Any]] = {}
        for index, (ev, kind) in enumerate(zip(body["events"], kinds, strict=True)):
            if kind not in VALID_KINDS:
                exp.rejected_indexes.append(index)
            elif ev["event_id"] in stored or ev["event_id"] in seen:
                exp.duplicates.append(ev["event_id"])
            else:
                seen.add(ev["event_id"])
                exp.accepted.append(ev["event_id"])
                new[ev["event_id"]] = (body["batch_id"], index, ev)
        if not exp.accepted and not exp.duplicates:
            exp.status = 422  # nothing of it is stored
        else:
            stored.update(new)
        out.append(exp)
    return out, stored


def snapshot(db) -> dict[str, list[tuple]]:
    with db.engine.connect() as conn:
        return {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY 1, 2"))] for t in TABLES}


def fresh_token(db) -> str:
    truncate_all(db)
    clear_token_cache()
    with db.transaction() as s:
        return create_token(s, "dev-1")


@PROPERTY_SETTINGS
@given(scenario=scenarios)
def test_any_mix_is_persisted_exactly_once_with_counts_that_add_up(client, db, scenario):
    token = fresh_token(db)
    batches = make_batches(scenario)
    bodies = [body for body, _ in batches]
    expected, stored = reference(batches)
    total_accepted = 0
    for body, exp in zip(bodies, expected, strict=True):
        r = client.post(URL, json=body, headers=auth(token))
        got = r.get_json()
        assert r.status_code == exp.status, got
        assert got["received"] == len(body["events"]) == got["accepted"] + got["duplicates"] + got["rejected"]
        assert got["accepted"] == len(exp.accepted)
        assert got["duplicates"] == len(exp.duplicates)
        assert sorted(got["duplicate_event_ids"]) == sorted(exp.duplicates)
        assert [e["index"] for e in got["errors"]] == exp.rejected_indexes
        total_accepted += got["accepted"]

    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT event_id, batch_id, seq, raw FROM raw_events")).all()
        batch_rows = conn.execute(text("SELECT batch_id, received, accepted, duplicates, rejected FROM batches")).all()
    assert len(rows) == len({r.event_id for r in rows}) == len(stored) == total_accepted
    assert {str(r.event_id): (str(r.batch_id), r.seq, r.raw) for r in rows} == stored
    stored_batches = {body["batch_id"]: exp for body, exp in zip(bodies, expected, strict=True) if exp.status == 202}
    assert {str(b.batch_id): (b.accepted, b.duplicates, b.rejected) for b in batch_rows} == {
        bid: (len(e.accepted), len(e.duplicates), len(e.rejected_indexes)) for bid, e in stored_batches.items()}


@PROPERTY_SETTINGS
@given(scenario=scenarios,
       resends=st.lists(st.tuples(st.integers(0, 3), st.integers(-60, 60)), min_size=1, max_size=6))
def test_resending_any_batch_changes_nothing(client, db, scenario, resends):
    token = fresh_token(db)
    bodies = [body for body, _ in make_batches(scenario)]
    replies = [client.post(URL, json=b, headers=auth(token)) for b in bodies]
    first = [r.status_code for r in replies]
    assert set(first) <= {202, 422}
    before = snapshot(db)
    for which, shift_seconds in resends:
        index = which % len(bodies)
        body = bodies[index]
        sent_at = datetime.fromisoformat(body["sent_at"].replace("Z", "+00:00")) + timedelta(seconds=shift_seconds)
        r = client.post(URL, json=dict(body, sent_at=iso(sent_at)),
                        headers={**auth(token), "X-Correlation-ID": f"resend-{uuid.uuid4().hex}"})
        got = r.get_json()
        if first[index] == 202:
            assert r.status_code == 200, got
            original = replies[index].get_json()
            assert got["status"] == "duplicate" and got["replay_of_first_reply"] is True
            # The first answer's counts, per-event errors and duplicate ids, replayed.
            for key in ("received", "accepted", "duplicates", "rejected", "errors", "duplicate_event_ids"):
                assert got[key] == original[key], key
            assert got["original_status"] == original["status"]
            assert got["duplicates"] == len(got["duplicate_event_ids"])  # the list matches the count
        else:
            assert r.status_code == 422, got
    # Nothing changed but the trail, which records each resend.
    assert {t: rows for t, rows in snapshot(db).items() if t != "audit_log"} == \
        {t: rows for t, rows in before.items() if t != "audit_log"}
