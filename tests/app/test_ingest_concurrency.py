"""POST /api/workflow/events/orchestrate against the real PostgreSQL.

The same and overlapping batches from many threads.
"""

from __future__ import annotations

import random
import threading
import uuid
from datetime import timedelta
from typing import Any

from tests.support.factories import batch, event, iso, now
from tests.support.ingest import counts, post, query


def _run_in_threads(app, n: int, work) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        c = app.test_client()
        barrier.wait()
        try:
            results[i] = work(i, c)
        except BaseException as exc:  # reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not [r for r in results if isinstance(r, BaseException)]
    return results


def test_the_same_batch_from_20_threads_is_stored_once(app, token, clean_db):
    body = batch([event() for _ in range(25)])

    def send(i: int, c: Any) -> tuple[int, dict[str, Any]]:
        r = post(c, token, dict(body, sent_at=iso(now() + timedelta(milliseconds=i))))
        return r.status_code, r.get_json()

    results = _run_in_threads(app, 20, send)
    statuses = sorted(s for s, _ in results)
    assert statuses == [200] * 19 + [202]
    assert {b["status"] for s, b in results if s == 200} == {"duplicate"}
    assert sum(b["accepted"] for s, b in results if s == 202) == 25
    # Every resend is answered with the first reply again, marked as such.
    assert {(b["accepted"], b["replay_of_first_reply"]) for s, b in results if s == 200} == {(25, True)}
    got = counts(clean_db)
    assert (got["batches"], got["raw_events"], got["outbox"]) == (1, 25, 1)


def test_overlapping_batches_from_20_threads_store_each_event_once(app, token, clean_db):
    rng = random.Random(7)
    pool = [event(event_id=str(uuid.uuid4())) for _ in range(60)]
    bodies = [batch(rng.sample(pool, 40)) for _ in range(20)]  # shuffled: each batch in its own order

    def send(i: int, c: Any) -> tuple[int, dict[str, Any]]:
        r = post(c, token, bodies[i])
        return r.status_code, r.get_json()

    results = _run_in_threads(app, 20, send)
    assert [s for s, _ in results] == [202] * 20, [b for _, b in results]
    for _, b in results:
        assert b["received"] == 40 == b["accepted"] + b["duplicates"] + b["rejected"]
    distinct = {e["event_id"] for body in bodies for e in body["events"]}
    assert sum(b["accepted"] for _, b in results) == len(distinct)
    rows = query(clean_db, "SELECT event_id, count(*) OVER (PARTITION BY event_id) FROM raw_events")
    assert {str(r[0]) for r in rows} == distinct
    assert len(rows) == len(distinct)
    # Each event is attributed to exactly the batch that reported it as accepted.
    accepted_total = query(clean_db, "SELECT sum(accepted), sum(duplicates) FROM batches")[0]
    assert tuple(accepted_total) == (len(distinct), 20 * 40 - len(distinct))
