"""End to end (POST -> batch `processed`) and the bare-chord floor on the same broker and worker."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.events import Body
from bench.load import Run, closed_loop, open_loop, percentile

TERMINAL = ("processed", "processed_with_errors", "failed")


def _r(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def wait_batches(connect, batch_ids: list[str], timeout: float,
                 poll: float = 0.1) -> dict[str, tuple[str, float, float]]:
    """batch_id -> (status, received_at, completed_at) as epoch seconds, once every batch is terminal
    (or the timeout passed: then only the finished ones). Polls every `poll` seconds."""
    done: dict[str, tuple[str, float, float]] = {}
    pending = set(batch_ids)
    deadline = time.monotonic() + timeout
    with contextlib.closing(connect()) as conn:
        conn.autocommit = True
        with conn.cursor() as cur:
            while pending and time.monotonic() < deadline:
                cur.execute("SELECT batch_id::text, status, extract(epoch FROM received_at)::float8,"
                            " extract(epoch FROM completed_at)::float8 FROM batches"
                            " WHERE batch_id = ANY(%s::uuid[]) AND completed_at IS NOT NULL AND status = ANY(%s)",
                            (list(pending), list(TERMINAL)))
                for batch_id, status, received, completed in cur.fetchall():
                    done[batch_id] = (status, received, completed)
                    pending.discard(batch_id)
                if pending:
                    time.sleep(poll)
    return done


def e2e_latency(port: int, connect, next_body: Callable[[], Body], *, rate: float, duration: float,
                timeout: float) -> dict[str, Any]:
    run = open_loop(port, next_body, rate=rate, duration=duration, threads=4)
    done = wait_batches(connect, run.batch_ids, timeout)
    exact = [(c - r) * 1000.0 for _, r, c in done.values()]
    sent = dict(zip(run.batch_ids, run.sent_at, strict=True))
    from_send = [(c - sent[b]) * 1000.0 for b, (_, _, c) in done.items()]
    return {
        "rate_per_s": rate, "posted": len(run.batch_ids), "processed": len(done),
        "statuses": dict(Counter(s for s, _, _ in done.values())), "ingest": run.summary(),
        "p50_ms": _r(percentile(exact, 50)), "p99_ms": _r(percentile(exact, 99)),
        "max_ms": _r(max(exact, default=None)),
        "from_send_p50_ms": _r(percentile(from_send, 50)), "from_send_p99_ms": _r(percentile(from_send, 99)),
    }


def e2e_throughput(port: int, connect, next_body: Callable[[], Body], *, count: int, threads: int,
                   timeout: float) -> dict[str, Any]:
    run: Run = closed_loop(port, next_body, threads=threads, count=count)
    posted_at = time.time()
    done = wait_batches(connect, run.batch_ids, timeout)
    first = min(run.sent_at) if run.sent_at else posted_at
    last = max((c for _, _, c in done.values()), default=posted_at)
    elapsed = last - first
    return {
        "count": count, "threads": threads, "posted": len(run.batch_ids), "processed": len(done),
        "statuses": dict(Counter(s for s, _, _ in done.values())), "ingest": run.summary(),
        "posting_s": round(posted_at - first, 3), "elapsed_s": round(elapsed, 3),
        "batches_per_s": round(len(done) / elapsed, 2) if elapsed > 0 and done else 0.0,
        "complete": len(done) == count,
    }


def keeps_up(port: int, connect, next_body: Callable[[], Body], *, threads: int, duration: float,
             timeout: float) -> dict[str, Any]:
    """`threads` closed-loop clients post for `duration` s while the worker (and beat) run; then wait up to
    `timeout` s for every acknowledged batch to be terminal. The lag is max(completed_at) - the last 202's
    arrival: how far behind the pipeline is when the load stops (None: not done within the timeout)."""
    run: Run = closed_loop(port, next_body, threads=threads, duration=duration)
    last_ack = max(run.acked_at, default=time.time())
    # Polled every 0.5 s: with thousands of batches pending, a 0.1 s poll would itself be load on PostgreSQL.
    done = wait_batches(connect, run.batch_ids, timeout, poll=0.5)
    waited = time.time() - last_ack
    complete = bool(run.batch_ids) and len(done) == len(run.batch_ids)
    first = min(run.sent_at, default=last_ack)
    last = max((c for _, _, c in done.values()), default=None)
    elapsed = (last - first) if last is not None else None
    return {
        "duration_s": duration, "threads": threads, "timeout_s": timeout, "ingest": run.summary(),
        "posted": len(run.batch_ids), "processed": len(done), "complete": complete,
        "statuses": dict(Counter(s for s, _, _ in done.values())),
        "events_per_s": run.summary()["events_per_s"],
        "lag_s": _r(last - last_ack, 2) if complete and last is not None else None,
        "waited_s": round(waited, 1), "not_done": len(run.batch_ids) - len(done),
        "batches_per_s": round(len(done) / elapsed, 2) if elapsed and elapsed > 0 else 0.0,
    }


class ChordTimer:
    """Publishes bare chords and collects their callbacks' finish times from Redis."""

    def __init__(self, redis_url: str) -> None:
        import redis

        from bench.celery_bench import DONE_KEY

        self.redis = redis.Redis.from_url(redis_url)
        self.key = DONE_KEY
        self.redis.delete(self.key)
        self.ids = itertools.count()

    def publish(self, sent: float) -> str:
        from bench.celery_bench import bare_chord

        chord_id = f"c{next(self.ids)}"
        bare_chord({"id": chord_id, "sent": sent}).apply_async(retry=False)
        return chord_id

    def collect(self, ids: list[str], timeout: float) -> dict[str, dict[str, float]]:
        wanted = set(ids)
        got: dict[str, dict[str, float]] = {}
        deadline = time.monotonic() + timeout
        while wanted - got.keys() and time.monotonic() < deadline:
            item = self.redis.blpop([self.key], timeout=1)
            if item is None:
                continue
            doc = json.loads(item[1])
            if doc["id"] in wanted:
                got[doc["id"]] = doc
        return got


def chord_latency(timer: ChordTimer, *, rate: float, duration: float, timeout: float) -> dict[str, Any]:
    total = max(1, int(rate * duration))
    start = time.time() + 0.1
    ids: list[str] = []
    late = 0
    for i in range(total):
        scheduled = start + i / rate
        delay = scheduled - time.time()
        if delay > 0:
            time.sleep(delay)
        elif delay < -0.05:
            late += 1
        ids.append(timer.publish(scheduled))  # latency counts from the scheduled time
    got = timer.collect(ids, timeout)
    lat = [(d["done"] - d["sent"]) * 1000.0 for d in got.values()]
    return {"rate_per_s": rate, "sent": total, "completed": len(got), "late_starts": late,
            "p50_ms": _r(percentile(lat, 50)), "p99_ms": _r(percentile(lat, 99)), "max_ms": _r(max(lat, default=None))}


def chord_throughput(timer: ChordTimer, *, count: int, threads: int, timeout: float) -> dict[str, Any]:
    ids: list[str] = []
    lock = threading.Lock()
    counter = itertools.count()
    first = time.time()

    def worker() -> None:
        while next(counter) < count:
            chord_id = timer.publish(time.time())
            with lock:
                ids.append(chord_id)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    published = time.time()
    got = timer.collect(ids, timeout)
    last = max((d["done"] for d in got.values()), default=published)
    elapsed = last - first
    return {"count": count, "threads": threads, "completed": len(got), "publishing_s": round(published - first, 3),
            "elapsed_s": round(elapsed, 3), "chords_per_s": round(len(got) / elapsed, 1) if got else 0.0,
            "complete": len(got) == count}
