"""Job leases and dispatch attempts on batch_jobs (recovery by silence, fencing by attempt, a cap on lost runs);
the broker marker the sweeper remembers

Revision ID: 0006
Revises: 0014
Create Date: 2026-11-27 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The batch's dispatch attempt (batches.dispatch_count) whose run the row describes: a late start, finish or
    # callback of an older attempt changes nothing once a newer attempt exists.
    op.add_column("batch_jobs", sa.Column("dispatch_attempt", sa.Integer(), server_default="0", nullable=False))
    # While running: renewed by the worker's heartbeat; a lease that runs out means the run was lost.
    op.add_column("batch_jobs", sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True))
    # Celery's retry count of the run that last started: a retry is not a lost run, a redelivery is.
    op.add_column("batch_jobs", sa.Column("retries", sa.Integer(), server_default="0", nullable=False))
    # Runs in a row that started and never finished (their worker died): capped (JOB_MAX_LOST_RUNS).
    op.add_column("batch_jobs", sa.Column("lost_runs", sa.Integer(), server_default="0", nullable=False))
    # The token of the marker key the sweeper keeps in the broker (tasks/broker_watch.py): a broker without it
    # lost its contents. Remembered here, so the broker's first use is not taken for a loss.
    op.create_table(
        "broker_markers",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("broker_markers")
    for column in ("lost_runs", "retries", "lease_expires_at", "dispatch_attempt"):
        op.drop_column("batch_jobs", column)
