"""Deliveries keep what they are about, so processes sharing a store handle a subject in order.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Deliveries stored before this keep no subject: they are claimed as before, unordered
    # across processes (a process still handles its own in order).
    op.add_column("deliveries", sa.Column("subject", sa.String(300)))
    # Only pending deliveries are looked up by subject: the index holds just those.
    op.create_index(
        "ix_deliveries_subject_pending",
        "deliveries",
        ["subject", "received_at"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_subject_pending", table_name="deliveries")
    with op.batch_alter_table("deliveries") as table:
        table.drop_column("subject")
