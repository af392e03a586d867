"""per-developer keys: batch_id and event_id are unique per developer, not across all developers

Until now `batches.batch_id` and `raw_events.event_id` were primary keys on their own, so one developer posting
another's id first made the other's batch a 409 or the other's event a silent "duplicate" (and told the first one
that the id existed). The keys become pairs:

    batches            PRIMARY KEY (developer_id, batch_id)          + ix_batches_batch_id (admin / CLI lookups)
    raw_events         PRIMARY KEY (developer_id, event_id)          FK (developer_id, batch_id) -> batches
    normalized_events  PRIMARY KEY (developer_id, event_id)          FK (developer_id, event_id) -> raw_events
    batch_jobs         PRIMARY KEY (developer_id, batch_id, job)     FK (developer_id, batch_id) -> batches
    outbox             + developer_id                                FK (developer_id, batch_id) -> batches

Existing rows are kept: `outbox` and `batch_jobs` get their developer_id from their batch (every existing
batch_id is still unique, so the match is exact), and every old key is unique under the wider one. Neither
append-only trigger names a key (audit records keep batch_id, without a foreign key), and ALTER TABLE fires no
row trigger, so raw_events stays untouched.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, old single-column FK, its columns, referred table, referred columns)
_OLD_FKS = (
    ("normalized_events", "fk_normalized_events_event_id_raw_events", ["event_id"], "raw_events", ["event_id"]),
    ("raw_events", "fk_raw_events_batch_id_batches", ["batch_id"], "batches", ["batch_id"]),
    ("outbox", "fk_outbox_batch_id_batches", ["batch_id"], "batches", ["batch_id"]),
    ("batch_jobs", "fk_batch_jobs_batch_id_batches", ["batch_id"], "batches", ["batch_id"]),
)
_NEW_FKS = (
    ("raw_events", "fk_raw_events_developer_id_batches", ["developer_id", "batch_id"], "batches",
     ["developer_id", "batch_id"]),
    ("outbox", "fk_outbox_developer_id_batches", ["developer_id", "batch_id"], "batches",
     ["developer_id", "batch_id"]),
    ("batch_jobs", "fk_batch_jobs_developer_id_batches", ["developer_id", "batch_id"], "batches",
     ["developer_id", "batch_id"]),
    ("normalized_events", "fk_normalized_events_developer_id_raw_events", ["developer_id", "event_id"],
     "raw_events", ["developer_id", "event_id"]),
)
# (table, old primary key columns, new primary key columns); all named pk_<table>.
_PKS = (
    ("batches", ["batch_id"], ["developer_id", "batch_id"]),
    ("raw_events", ["event_id"], ["developer_id", "event_id"]),
    ("normalized_events", ["event_id"], ["developer_id", "event_id"]),
    ("batch_jobs", ["batch_id", "job"], ["developer_id", "batch_id", "job"]),
)


def _add_developer_column(table: str) -> None:
    """developer_id on a table that references batches, filled from its batch, then NOT NULL."""
    op.add_column(table, sa.Column("developer_id", sa.String(length=128), nullable=True))
    op.execute(f"UPDATE {table} AS t SET developer_id = b.developer_id FROM batches AS b WHERE b.batch_id = t.batch_id")
    op.alter_column(table, "developer_id", nullable=False)


def upgrade() -> None:
    for table, name, *_ in _OLD_FKS:
        op.drop_constraint(op.f(name), table, type_="foreignkey")
    _add_developer_column("outbox")
    _add_developer_column("batch_jobs")
    for table, _, new in _PKS:
        op.drop_constraint(op.f(f"pk_{table}"), table, type_="primary")
        op.create_primary_key(op.f(f"pk_{table}"), table, new)
    # Operators and admins look a batch up by its id alone (then pick the developer if several own it).
    op.create_index("ix_batches_batch_id", "batches", ["batch_id"], unique=False)
    for table, name, columns, referred, referred_columns in _NEW_FKS:
        op.create_foreign_key(op.f(name), table, referred, columns, referred_columns)


def downgrade() -> None:
    # Only possible while no batch_id and no event_id is shared by two developers (the old keys are global).
    for table, name, *_ in _NEW_FKS:
        op.drop_constraint(op.f(name), table, type_="foreignkey")
    op.drop_index("ix_batches_batch_id", table_name="batches")
    for table, old, _ in _PKS:
        op.drop_constraint(op.f(f"pk_{table}"), table, type_="primary")
        op.create_primary_key(op.f(f"pk_{table}"), table, old)
    op.drop_column("batch_jobs", "developer_id")
    op.drop_column("outbox", "developer_id")
    for table, name, columns, referred, referred_columns in reversed(_OLD_FKS):
        op.create_foreign_key(op.f(name), table, referred, columns, referred_columns)
