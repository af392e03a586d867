"""metric slots, activity breakdowns, developer settings; debug-start index

Metrics move from stored hour/day buckets to 15-minute UTC slots (hours, local days and weeks are sums of
slots at read time). The old buckets are derived data: they are dropped, and every developer with stored
events is marked for a background recompute (developer_settings.recompute_*), which rebuilds the slots from
the stored events in bounded chunks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COUNTS = ("events", "active_us", "edits", "lines_added", "lines_deleted", "saves", "error_events", "builds",
           "build_failures", "tests_passed", "tests_failed", "debug_us", "typed_chars", "ai_chars_inserted", "commits")


def upgrade() -> None:
    op.create_table(
        "metric_slots",
        sa.Column("developer_id", sa.String(length=128), nullable=False),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=False),
        *[sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTS],
        sa.Column("computed_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("active_us BETWEEN 0 AND 900000000", name=op.f("ck_metric_slots_active_within_slot")),
        sa.CheckConstraint("debug_us BETWEEN 0 AND 900000000", name=op.f("ck_metric_slots_debug_within_slot")),
        sa.PrimaryKeyConstraint("developer_id", "slot_start", name=op.f("pk_metric_slots")),
    )
    op.create_table(
        "activity_breakdowns",
        sa.Column("developer_id", sa.String(length=128), nullable=False),
        sa.Column("slot_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=False),
        sa.Column("active_us", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("dimension IN ('language','project')", name=op.f("ck_activity_breakdowns_dimension")),
        sa.PrimaryKeyConstraint("developer_id", "slot_start", "dimension", "key",
                                name=op.f("pk_activity_breakdowns")),
    )
    op.create_table(
        "developer_settings",
        sa.Column("developer_id", sa.String(length=128), nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("idle_timeout_seconds", sa.Integer(), server_default="300", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        # A pending recompute of the developer's derived rows over [recompute_from, recompute_until), done up
        # to recompute_done_until; all NULL when none is pending.
        sa.Column("recompute_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recompute_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recompute_done_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recompute_requested_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("idle_timeout_seconds BETWEEN 60 AND 3600", name=op.f("ck_developer_settings_idle")),
        sa.PrimaryKeyConstraint("developer_id", name=op.f("pk_developer_settings")),
    )
    op.create_table(
        "quarantined_events",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("developer_id", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.UUID(), nullable=False),
        sa.Column("batch_id", sa.UUID(), nullable=False),
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        # NULL while the event is skipped by every job; set when an operator releases it (requeue --quarantined).
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantined_events")),
    )
    op.create_index("ix_quarantined_events_active", "quarantined_events", ["developer_id", "event_id"],
                    unique=True, postgresql_where=sa.text("released_at IS NULL"))
    # Debug sessions are found by their starts: a bounded window asks "any start near here?" and "did this
    # session id start earlier?", both answered from this small index whatever the history.
    op.create_index("ix_raw_events_debug_starts", "raw_events", ["developer_id", "corrected_ts"],
                    postgresql_where=sa.text("type = 'debug.start'"))
    op.drop_table("developer_metrics")
    # Alerts are derived data: versioned, withdrawn (never deleted) when their episode no longer qualifies;
    # one found by a background recompute belongs to no batch.
    op.alter_column("alerts", "batch_id", nullable=True)
    op.add_column("alerts", sa.Column("version", sa.Integer(), server_default="1", nullable=False))
    op.drop_constraint(op.f("ck_alerts_status"), "alerts", type_="check")
    op.create_check_constraint(op.f("ck_alerts_status"), "alerts", "status IN ('open','acknowledged','withdrawn')")
    op.execute("""
        INSERT INTO developer_settings (developer_id, recompute_from, recompute_until, recompute_done_until,
                                        recompute_requested_at)
        SELECT developer_id, min(corrected_ts), max(corrected_ts) + interval '1 day', min(corrected_ts), now()
          FROM raw_events GROUP BY developer_id
    """)


def downgrade() -> None:
    raise NotImplementedError("0002 replaces derived tables; restore from a backup to go back")
