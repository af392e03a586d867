"""The suite's database helpers: every table the application writes, and wiping them between tests."""

from __future__ import annotations

import time

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from models.db import Database

TABLES = (
    "audit_log",
    "admin_alerts",
    "alert_notifications",
    "alerts",
    "metric_slots",
    "activity_breakdowns",
    "developer_settings",
    "quarantined_events",
    "normalized_events",
    "batch_jobs",
    "outbox",
    "raw_events",
    "batches",
    "api_tokens",
    "login_links",
    "broker_markers",
    "import_jobs",
)


def truncate_all(database: Database, attempts: int = 5) -> None:
    """Empty every table. The suite's in-process worker may still be finishing an earlier test's job (a chord, an
    import): its transaction and this TRUNCATE can deadlock, and PostgreSQL then aborts one of them. The job
    retries its own; this waits a moment and truncates again (lock_timeout keeps it from queueing behind a long
    job for ever)."""
    for attempt in range(1, attempts + 1):
        try:
            with database.engine.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
            return
        except OperationalError as exc:  # deadlock detected, lock timeout
            if attempt == attempts or getattr(exc.orig, "pgcode", None) not in ("40P01", "55P03"):
                raise
            time.sleep(0.2 * attempt)
