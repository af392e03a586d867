"""The suite's database helpers: every table the application writes, and wiping them between tests."""

from __future__ import annotations

from sqlalchemy import text

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


def truncate_all(database: Database) -> None:
    with database.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
