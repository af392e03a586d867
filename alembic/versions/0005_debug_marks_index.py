"""Index debug stops beside debug starts (ix_raw_events_debug_marks replaces ix_raw_events_debug_starts)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 12:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Aggregation asks "which debug sessions near here are still running?" (models/aggregation.py): starts and
    # stops, from one small index whatever the history. Queries for starts only can use it as well.
    op.create_index("ix_raw_events_debug_marks", "raw_events", ["developer_id", "corrected_ts"],
                    postgresql_where=sa.text("type IN ('debug.start', 'debug.stop')"))
    op.drop_index("ix_raw_events_debug_starts", table_name="raw_events")


def downgrade() -> None:
    op.create_index("ix_raw_events_debug_starts", "raw_events", ["developer_id", "corrected_ts"],
                    postgresql_where=sa.text("type = 'debug.start'"))
    op.drop_index("ix_raw_events_debug_marks", table_name="raw_events")
