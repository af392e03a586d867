"""`python -m bench.jobs [--history-hours H] [--batches N]`: CPU of each header job's function per batch.

No Celery, no HTTP: one developer gets H hours of bench events (bench/events.py, one every 1-4 s) stored the
way ingest stores them, then N further 100-event batches are stored and each job's plain function
(models/aggregation.py, models/normalization.py, models/danger_detection.py, in its own transaction like
tasks/pipeline.py) runs on each in turn. Prints the Python CPU (process time) and wall time per batch and job:
the part of the worker's CPU that is devpulse's own, without the Celery overhead a bare chord measures.
Uses DATABASE_URL, else an embedded throwaway PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history-hours", type=float, default=6.0)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--profile", metavar="JOB", help="cProfile this job (aggregate|normalize|detect_danger)")
    args = parser.parse_args(argv)

    import random

    from bench.events import Developer
    from core.settings import Settings
    from devstack.servers import EmbeddedPostgres, migrate
    from models.db import Database

    server = None
    url = os.environ.get("DATABASE_URL")
    if not url:
        import tempfile
        from pathlib import Path

        server = EmbeddedPostgres(Path(tempfile.mkdtemp(prefix="devpulse-jobs-")) / "pg").start()
        url = server.create_database("devpulse_jobs")
    try:
        migrate(url)
        db = Database()
        db.configure(url)
        settings = Settings.from_env(database_url=url)
        end = datetime.now(UTC) - timedelta(hours=2)
        dev = Developer(f"jobs-{os.getpid()}", "", end - timedelta(hours=args.history_hours), random.Random(5))
        history: list[Any] = []
        while dev.clock < end - timedelta(minutes=30):
            history.append(_store(db, settings, dev, end))
        print(f"history: {len(history)} batches, {len(history) * 100} events over {args.history_hours:g} h")
        figures = _measure(db, dev, settings, end, args.batches, args.profile)
        print(json.dumps(figures, indent=1))
    finally:
        if server is not None:
            server.stop()
    return 0


def _store(db: Any, settings: Any, dev: Any, latest: datetime) -> Any:
    from app.ingest.prepare import prepare_batch
    from models.ingest import persist_batch

    body = {"batch_id": _uuid(), "developer_id": dev.developer_id, "sent_at": datetime.now(UTC).isoformat(),
            "schema_version": "1.1", "client": {"extension_version": "0.1.0", "editor": "vscode"},
            "events": [dev.event(latest) for _ in range(100)]}
    prepared = prepare_batch(body, correlation_id=_uuid(), received_at=datetime.now(UTC), settings=settings)
    with db.transaction() as s:
        return persist_batch(s, prepared).batch


def _uuid() -> str:
    import uuid

    return str(uuid.uuid4())


def _measure(db: Any, dev: Any, settings: Any, end: datetime, n: int, profile: str | None) -> dict[str, Any]:
    from activity.danger import DangerThresholds
    from models.aggregation import aggregate_batch
    from models.batch_lifecycle import find_batch
    from models.danger_detection import detect_for_batch
    from models.normalization import normalize_batch

    th = DangerThresholds.from_overrides(settings.danger)
    jobs = {
        "aggregate": lambda s, b: aggregate_batch(s, b, idle_timeout_seconds=300, is_replay=True),
        "normalize": lambda s, b: normalize_batch(s, b),
        "detect_danger": lambda s, b: detect_for_batch(s, b, correlation_id="bench", thresholds=th,
                                                       freshness=timedelta(hours=24), is_replay=True),
    }
    cpu: dict[str, list[float]] = {k: [] for k in jobs}
    wall: dict[str, list[float]] = {k: [] for k in jobs}
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
    for _ in range(n):
        batch = _store(db, settings, dev, datetime.now(UTC) - timedelta(minutes=1))
        for name, job in jobs.items():
            c0, w0 = time.process_time(), time.perf_counter()
            if profiler is not None and name == profile:
                profiler.enable()
            with db.transaction() as s:
                job(s, find_batch(s, batch.developer_id, batch.batch_id))
            if profiler is not None and name == profile:
                profiler.disable()
            cpu[name].append((time.process_time() - c0) * 1000)
            wall[name].append((time.perf_counter() - w0) * 1000)
    if profiler is not None:
        import pstats

        pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
    return {name: {"cpu_ms_median": round(statistics.median(cpu[name]), 2),
                   "wall_ms_median": round(statistics.median(wall[name]), 2)} for name in jobs}


if __name__ == "__main__":
    raise SystemExit(main())
