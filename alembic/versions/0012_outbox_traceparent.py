"""The outbox record's W3C traceparent (the request's trace, continued by whichever process publishes it)

Revision ID: 0012
Revises: 0013
Create Date: 2026-11-27 17:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL when tracing is off (core/tracing.py) or the record was written outside any trace. No rewrite:
    # adding a nullable column without a default only changes the catalog.
    op.add_column("outbox", sa.Column("traceparent", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "traceparent")
