"""api_tokens.ingest_for_all: the one capability that lets a token ingest for any developer

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Off for every existing token: admin tokens no longer ingest for other developers unless given it.
    op.add_column("api_tokens", sa.Column("ingest_for_all", sa.Boolean(), server_default=sa.text("false"),
                                          nullable=False))
    # An ingest-only token (an importer) needs neither a developer nor admin rights.
    op.drop_constraint(op.f("ck_api_tokens_developer_or_admin"), "api_tokens", type_="check")
    op.create_check_constraint(op.f("ck_api_tokens_developer_or_admin"), "api_tokens",
                               "is_admin OR developer_id IS NOT NULL OR ingest_for_all")


def downgrade() -> None:
    op.execute("DELETE FROM api_tokens WHERE NOT is_admin AND developer_id IS NULL")
    op.drop_constraint(op.f("ck_api_tokens_developer_or_admin"), "api_tokens", type_="check")
    op.create_check_constraint(op.f("ck_api_tokens_developer_or_admin"), "api_tokens",
                               "is_admin OR developer_id IS NOT NULL")
    op.drop_column("api_tokens", "ingest_for_all")
