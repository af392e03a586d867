"""Alert notifications: the outbox of developer alerts (SSE publish and webhook), written with the alert change

Revision ID: 0007
Revises: 0005
Create Date: 2026-11-27 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_notifications",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("developer_id", sa.String(length=128), nullable=False),
        sa.Column("batch_id", sa.UUID(), nullable=False),
        sa.Column("correlation_id", sa.String(length=128), nullable=False),
        sa.Column("alerts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("alert_count", sa.Integer(), nullable=False),
        sa.Column("withheld", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("webhook_delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('pending','delivered','dead_letter')",
                           name=op.f("ck_alert_notifications_status")),
        sa.ForeignKeyConstraint(["developer_id", "batch_id"], ["batches.developer_id", "batches.batch_id"],
                                name=op.f("fk_alert_notifications_developer_id_batches")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_notifications")),
    )
    # The relay's scan (due pending records) and the per-developer rate cap's count of the last hour.
    op.create_index("ix_alert_notifications_pending", "alert_notifications", ["next_attempt_at"],
                    postgresql_where=sa.text("status = 'pending'"))
    op.create_index("ix_alert_notifications_developer_created", "alert_notifications",
                    ["developer_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_notifications_developer_created", table_name="alert_notifications")
    op.drop_index("ix_alert_notifications_pending", table_name="alert_notifications",
                  postgresql_where=sa.text("status = 'pending'"))
    op.drop_table("alert_notifications")
