"""Index the outbox's dead letters, so /metrics counts them without reading the outbox's history

Revision ID: 0009
Revises: 0006
Create Date: 2026-11-27 17:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # /metrics counts pending (ix_outbox_pending) and dead-letter records at every scrape: each through its own
    # small partial index, and at most models.health.GAUGE_CAP of them, however long the outbox's history.
    op.create_index("ix_outbox_dead_letter", "outbox", ["id"], postgresql_where=sa.text("status = 'dead_letter'"))


def downgrade() -> None:
    op.drop_index("ix_outbox_dead_letter", table_name="outbox")
