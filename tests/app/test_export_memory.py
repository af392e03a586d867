"""200,000 events out of a real gunicorn, as NDJSON and Parquet: every posted event once, and the web process's
memory flat (its resident set grows by less than 50 MB during each download, measured here by sampling).

Runs on a stack of its own (tests/faults/harness.py: throwaway PostgreSQL + Redis, gunicorn as in the Procfile).
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import requests

from tests.faults.harness import INGEST_PATH, FaultStack
from tests.support.factories import batch, iso

EVENTS = 200_000
PER_BATCH = 1_000
LIMIT_MB = 50


class PeakRss:
    """Samples the resident set of every gunicorn worker; `growth` is the largest rise above its start."""

    def __init__(self, master_pid: int) -> None:
        self.workers = psutil.Process(master_pid).children()
        self.start = {p.pid: p.memory_info().rss for p in self.workers}
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for p in self.workers:
                self.peak[p.pid] = max(self.peak[p.pid], p.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return max(self.peak[pid] - self.start[pid] for pid in self.start) / 2**20


def _events(count: int, start: datetime) -> list[dict]:
    return [{"event_id": str(uuid.uuid4()), "type": "file.edit",
             "timestamp": iso(start + timedelta(milliseconds=250 * i)),
             "payload": {"file": f"src/m{i % 97}.py", "lines_added": i % 7, "lines_deleted": i % 3}}
            for i in range(count)]


def test_a_200k_event_export_streams_with_flat_memory():
    stack = FaultStack(Path(tempfile.mkdtemp(prefix="devpulse-export-"))).start_servers()
    try:
        web = stack.start_web()
        assert web.proc is not None
        token = stack.token_for("dev-export")
        headers = {"Authorization": f"Bearer {token}"}
        start = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
        events = _events(EVENTS, start)
        bodies = [batch(events[i:i + PER_BATCH], developer_id="dev-export")
                  for i in range(0, EVENTS, PER_BATCH)]
        # At-least-once delivery: five batches resent whole, and 1,000 events resent inside a new batch.
        bodies += [*bodies[:5], batch(events[5_000:6_000], developer_id="dev-export")]
        with requests.Session() as http, ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(
                lambda body: http.post(stack.base_url + INGEST_PATH, json=body, headers=headers, timeout=60)
                .status_code, bodies))
        assert statuses.count(202) == EVENTS // PER_BATCH + 1 and statuses.count(200) == 5
        posted = {e["event_id"] for e in events}

        url = f"{stack.base_url}/api/developers/dev-export/events/export"
        with PeakRss(web.proc.pid) as ndjson_rss, requests.get(url, headers=headers, stream=True,
                                                                   timeout=300) as response:
            assert response.status_code == 200
            ids = [json.loads(line)["event_id"] for line in response.iter_lines()]
        assert len(ids) == EVENTS and set(ids) == posted
        assert ndjson_rss.growth_mb < LIMIT_MB, f"NDJSON export grew a web worker by {ndjson_rss.growth_mb:.1f} MB"

        # The first Parquet answer of a worker loads pyarrow (a one-time cost, not one that grows with the range):
        # a small export first, so the figure below is the download's own.
        with PeakRss(web.proc.pid) as first_use:
            for _ in range(4):  # reaches both workers (2 workers x 4 threads) with near certainty
                small = requests.get(f"{url}?format=parquet&to={iso(start + timedelta(seconds=2))}",
                                     headers=headers, timeout=60)
                assert small.status_code == 200 and pq.read_table(io.BytesIO(small.content)).num_rows > 0
        with PeakRss(web.proc.pid) as parquet_rss, requests.get(url + "?format=parquet", headers=headers,
                                                                    stream=True, timeout=300) as response:
            assert response.status_code == 200
            data = io.BytesIO()
            for part in response.iter_content(1 << 16):
                data.write(part)
        table = pq.read_table(data)
        assert table.num_rows == EVENTS and set(table.column("event_id").to_pylist()) == posted
        assert parquet_rss.growth_mb < LIMIT_MB, f"Parquet export grew a web worker by {parquet_rss.growth_mb:.1f} MB"
        print(f"EXPORT-RESULT events={EVENTS} ndjson_rss_growth_mb={ndjson_rss.growth_mb:.1f} "
              f"parquet_rss_growth_mb={parquet_rss.growth_mb:.1f} pyarrow_first_use_mb={first_use.growth_mb:.1f}")
    finally:
        stack.close()
