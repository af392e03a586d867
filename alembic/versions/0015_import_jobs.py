"""Background history imports (WakaTime data exports): import_jobs

Revision ID: 0015
Revises: 0009
Create Date: 2026-11-27 18:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "import_jobs",
        sa.Column("id", postgresql.UUID(as_uuid=True), primary_key=True),
        sa.Column("developer_id", sa.String(128), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="pending"),
        sa.Column("file_path", sa.Text(), nullable=False),
        sa.Column("file_bytes", sa.BigInteger(), nullable=False),
        sa.Column("owns_file", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("batches_done", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("bytes_read", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("read", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("accepted", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("duplicates", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("errors", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("failure", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'running', 'done', 'failed')", name=op.f("ck_import_jobs_status")),
    )
    op.create_index("ix_import_jobs_developer_id", "import_jobs", ["developer_id"])


def downgrade() -> None:
    op.drop_table("import_jobs")
