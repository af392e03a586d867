"""Audit records carry the time of their step (clock_timestamp()); a batch keeps its first reply

Revision ID: 0011
Revises: 0008
Create Date: 2026-11-27 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # now() is the start of the inserting transaction: every record of one transaction got the same time (the
    # ingest's received / validated / persisted, a job_finished the job's start). clock_timestamp() is the time
    # of the statement itself; code that knows a step's own time (a request's arrival) gives it explicitly.
    op.alter_column("audit_log", "created_at", server_default=sa.text("clock_timestamp()"))
    # What the first answer to the batch said that its columns do not (status, per-event errors, duplicate ids,
    # events stored unprocessed): a resend of the batch gets that answer again. NULL for batches stored before.
    op.add_column("batches", sa.Column("first_reply", postgresql.JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("batches", "first_reply")
    op.alter_column("audit_log", "created_at", server_default=sa.text("now()"))
