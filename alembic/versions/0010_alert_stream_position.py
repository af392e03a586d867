"""Alerts remember the transaction that last announced them (the alert stream's Last-Event-ID position)

Revision ID: 0010
Revises: 0012
Create Date: 2026-11-27 17:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL: never announced (stale, or stored before this revision). models/alert_stream.py explains the order.
    op.add_column("alerts", sa.Column("announced_txid", sa.BigInteger(), nullable=True))
    op.create_index("ix_alerts_announced", "alerts", ["developer_id", "announced_txid", "alert_id"],
                    postgresql_where=sa.text("announced_txid IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_alerts_announced", table_name="alerts")
    op.drop_column("alerts", "announced_txid")
