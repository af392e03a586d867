"""batch_jobs.covered_by (one run of a job covers waiting batches), api_tokens.last_used_at

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 11:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The batch whose run of this job did this batch's work too (models/coalescing.py); NULL when it ran itself.
    op.add_column("batch_jobs", sa.Column("covered_by", sa.UUID(), nullable=True))
    op.add_column("api_tokens", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("api_tokens", "last_used_at")
    op.drop_column("batch_jobs", "covered_by")
