"""Deliveries keep their body as received (bytes, a table of its own); retention by age.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "delivery_bodies",
        sa.Column(
            "delivery_id",
            sa.String(100),
            sa.ForeignKey("deliveries.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    # batch mode: SQLite changes a column's nullability by copying the table.
    with op.batch_alter_table("deliveries") as table:
        table.alter_column("payload", existing_type=sa.JSON(), nullable=True)
    op.create_index("ix_deliveries_finished", "deliveries", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_finished", table_name="deliveries")
    op.execute("DELETE FROM deliveries WHERE payload IS NULL")
    with op.batch_alter_table("deliveries") as table:
        table.alter_column("payload", existing_type=sa.JSON(), nullable=False)
    op.drop_table("delivery_bodies")
