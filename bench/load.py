"""HTTP load: an open-loop (fixed-rate) driver and a closed-loop (max-throughput) driver.

Keep-alive http.client connections, one per thread; a connection the server closed while idle is noticed
before reuse (like urllib3 does) and reopened, and that reconnect counts in the request's latency.
"""

from __future__ import annotations

import http.client
import itertools
import json
import math
import select
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.events import Body

INGEST_PATH = "/api/workflow/events/orchestrate"


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (no interpolation): p99 of 30 samples is the largest one."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(ordered)))
    return ordered[rank - 1]


class Client:
    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.port = port
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None
        self.reconnects = 0

    def _connection(self) -> http.client.HTTPConnection:
        conn = self.conn
        if conn is not None and conn.sock is not None:
            readable, _, _ = select.select([conn.sock], [], [], 0)
            if readable:  # EOF (closed by the server's keep-alive timeout) or junk: start afresh
                conn.close()
                conn = None
        if conn is None:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            conn.connect()
            self.reconnects += 1
            self.conn = conn
        return conn

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        for attempt in (0, 1):
            conn = self._connection()
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    conn.close()
                    self.conn = None
                return resp.status, data
            except (http.client.HTTPException, ConnectionError, TimeoutError, OSError):
                conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def post_batch(self, body: Body) -> tuple[int, dict[str, Any]]:
        status, data = self.request("POST", INGEST_PATH, body.data, {
            "Content-Type": "application/json", "Authorization": f"Bearer {body.token}",
            "X-Correlation-ID": f"bench-{body.batch_id}"})
        try:
            doc = json.loads(data) if data else {}
        except ValueError:
            doc = {"raw": data[:200].decode(errors="replace")}
        return status, doc

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


@dataclass
class Run:
    """What one load phase observed."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    accepted_events: int = 0
    requests: int = 0
    elapsed_s: float = 0.0
    late_starts: int = 0  # open loop: requests a busy client thread started >50 ms after their slot
    batch_ids: list[str] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # wall clock of each send (for end-to-end timing)
    acked_at: list[float] = field(default_factory=list)  # wall clock of each 200/202 answer's arrival
    reconnects: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int, doc: dict[str, Any], latency_ms: float, body: Body, sent_wall: float) -> None:
        answered = time.time()
        with self.lock:
            self.requests += 1
            self.statuses[status] += 1
            self.latencies_ms.append(latency_ms)
            if status in (200, 202):
                self.accepted_events += int(doc.get("accepted", 0))
                self.batch_ids.append(body.batch_id)
                self.sent_at.append(sent_wall)
                self.acked_at.append(answered)
            elif len(self.errors) < 5:
                self.errors.append(f"{status}: {json.dumps(doc)[:300]}")

    def summary(self) -> dict[str, Any]:
        ok = sum(n for s, n in self.statuses.items() if s in (200, 202))
        return {
            "requests": self.requests, "ok": ok, "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors, "elapsed_s": round(self.elapsed_s, 3),
            "p50_ms": _r(percentile(self.latencies_ms, 50)), "p90_ms": _r(percentile(self.latencies_ms, 90)),
            "p99_ms": _r(percentile(self.latencies_ms, 99)), "max_ms": _r(max(self.latencies_ms, default=None)),
            "accepted_events": self.accepted_events,
            "events_per_s": round(self.accepted_events / self.elapsed_s, 1) if self.elapsed_s else None,
            "requests_per_s": round(ok / self.elapsed_s, 2) if self.elapsed_s else None,
            "late_starts": self.late_starts, "reconnects": self.reconnects,
        }


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _run_threads(n: int, target: Callable[[int], None]) -> None:
    failures: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # surfaced below: a crashed load thread must not pass silently
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True, name=f"load-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise RuntimeError(f"{len(failures)} load thread(s) failed: {failures[0]!r}") from failures[0]


def open_loop(port: int, next_body: Callable[[], Body], *, rate: float, duration: float, threads: int) -> Run:
    """`rate` requests/s on a fixed schedule; latency counts from each request's scheduled time, so a slow
    server shows as latency, never as a lower offered rate (no coordinated omission)."""
    run = Run()
    total = max(1, int(rate * duration))
    counter = itertools.count()
    start = time.perf_counter() + 0.1

    def worker(_: int) -> None:
        client = Client(port)
        try:
            while True:
                i = next(counter)
                if i >= total:
                    return
                body = next_body()
                scheduled = start + i / rate
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.05:
                    with run.lock:
                        run.late_starts += 1
                sent_wall = time.time()
                status, doc = client.post_batch(body)
                run.record(status, doc, (time.perf_counter() - scheduled) * 1000.0, body, sent_wall)
        finally:
            with run.lock:
                run.reconnects += client.reconnects
            client.close()

    _run_threads(threads, worker)
    run.elapsed_s = time.perf_counter() - start
    return run


def closed_loop(port: int, next_body: Callable[[], Body], *, threads: int, duration: float | None = None,
                count: int | None = None) -> Run:
    """`threads` clients sending back to back, for `duration` seconds or until `count` requests were sent."""
    run = Run()
    counter = itertools.count()
    start = time.perf_counter()
    deadline = start + duration if duration is not None else math.inf

    def worker(_: int) -> None:
        client = Client(port)
        try:
            while time.perf_counter() < deadline:
                if count is not None and next(counter) >= count:
                    return
                body = next_body()
                sent_wall = time.time()
                t0 = time.perf_counter()
                status, doc = client.post_batch(body)
                run.record(status, doc, (time.perf_counter() - t0) * 1000.0, body, sent_wall)
        finally:
            with run.lock:
                run.reconnects += client.reconnects
            client.close()

    _run_threads(threads, worker)
    run.elapsed_s = time.perf_counter() - start
    return run
