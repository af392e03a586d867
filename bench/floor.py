"""The floor: the same kind of events written straight to PostgreSQL, no HTTP, no Flask, no validation.

Per transaction: one `batches` row (raw_events (developer_id, batch_id) has a foreign key to it) and one multi-row
`INSERT INTO raw_events ... ON CONFLICT (developer_id, event_id) DO NOTHING` holding `events_per_commit` events, then
COMMIT. Same table, same indexes, same trigger, same server and same concurrency as the ingest phase.
Event JSON is serialized before the clock starts (with a placeholder for the fresh event id), so the
floor measures PostgreSQL and the driver only: it is the best any ingest path could hope for.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg2.extras import execute_values

from bench.events import CLIENT, Workload

_ID = "00000000-0000-4000-8000-000000000000"

BATCH_SQL = """INSERT INTO batches (batch_id, developer_id, correlation_id, content_hash, status, source,
    received_at, sent_at, client, received, accepted, duplicates, rejected)
    VALUES (%s, %s, %s, %s, 'persisted', 'native', %s, %s, %s, %s, %s, 0, 0)"""
EVENTS_SQL = """INSERT INTO raw_events (event_id, batch_id, developer_id, seq, type, schema_version, session_id,
    client_ts, client_utc_offset_minutes, corrected_ts, received_at, raw) VALUES %s
    ON CONFLICT (developer_id, event_id) DO NOTHING"""


def _templates(workload: Workload, n: int) -> list[tuple[str, str, str | None, str, str]]:
    """(developer_id, type, session_id, timestamp, raw JSON with an id placeholder)."""
    out: list[tuple[str, str, str | None, str, str]] = []
    while len(out) < n:
        dev, events = workload.events(100)
        for e in events:
            e = dict(e, event_id=_ID)
            out.append((dev.developer_id, e["type"], e["session_id"], e["timestamp"],
                        json.dumps(e, separators=(",", ":"))))
    return out[:n]


def run_floor(connect, workload: Workload, *, events_per_commit: int, threads: int,
              duration: float) -> dict[str, Any]:
    templates = _templates(workload, 5000)
    client_json = json.dumps(CLIENT)
    totals = {"events": 0, "commits": 0}
    lock = threading.Lock()
    failures: list[BaseException] = []
    conns = [connect() for _ in range(threads)]
    start = time.perf_counter()
    deadline = start + duration

    def worker(i: int) -> None:
        conn = conns[i]
        rng = random.Random(i)
        events = commits = 0
        try:
            with conn.cursor() as cur:
                while time.perf_counter() < deadline:
                    batch_id = str(uuid.uuid4())
                    base = rng.randrange(len(templates) - events_per_commit)
                    chunk = templates[base:base + events_per_commit]
                    developer = chunk[0][0]
                    now = datetime.now(UTC)
                    cur.execute(BATCH_SQL, (batch_id, developer, f"floor-{batch_id}",
                                            hashlib.sha256(batch_id.encode()).hexdigest(), now, now, client_json,
                                            len(chunk), len(chunk)))
                    rows = []
                    for seq, (_, type_, session, ts, raw) in enumerate(chunk):
                        event_id = str(uuid.uuid4())
                        rows.append((event_id, batch_id, developer, seq, type_, "1.1", session, ts, 0, ts, now,
                                     raw.replace(_ID, event_id, 1)))
                    execute_values(cur, EVENTS_SQL, rows, page_size=len(rows))
                    conn.commit()
                    events += len(rows)
                    commits += 1
        except BaseException as exc:
            failures.append(exc)
        with lock:
            totals["events"] += events
            totals["commits"] += commits

    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    elapsed = time.perf_counter() - start
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.close()
    if failures:
        raise RuntimeError(f"floor writer failed: {failures[0]!r}") from failures[0]
    return {"events_per_commit": events_per_commit, "threads": threads, "elapsed_s": round(elapsed, 3),
            "events": totals["events"], "commits": totals["commits"],
            "events_per_s": round(totals["events"] / elapsed, 1),
            "commits_per_s": round(totals["commits"] / elapsed, 1)}
