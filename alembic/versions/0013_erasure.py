"""Raw events stay append-only except inside a developer's erasure (models/erasure.py)

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-27 17:45:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A DELETE passes only for the rows of the developer whose erasure this transaction runs: the erasure sets
    # devpulse.erasure with SET LOCAL (set_config(..., true)), which ends with the transaction. UPDATE stays
    # refused everywhere.
    op.execute("""
        CREATE OR REPLACE FUNCTION devpulse_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'raw_events'
               AND OLD.developer_id = current_setting('devpulse.erasure', true) THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION '% on %.% is forbidden: the table is append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END $$;
    """)


def downgrade() -> None:
    op.execute("""
        CREATE OR REPLACE FUNCTION devpulse_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% on %.% is forbidden: the table is append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
                USING ERRCODE = 'insufficient_privilege';
        END $$;
    """)
