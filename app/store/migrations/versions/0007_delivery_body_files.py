"""Deliveries on SQLite keep their body in a file beside the database (see body_log.py).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ADD COLUMNs: no copy of the table, however many deliveries it holds.
    op.add_column("deliveries", sa.Column("body_file", sa.String(100)))
    op.add_column("deliveries", sa.Column("body_offset", sa.BigInteger()))
    op.add_column("deliveries", sa.Column("body_length", sa.Integer()))
    op.create_index("ix_deliveries_body_file", "deliveries", ["body_file"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_body_file", table_name="deliveries")
    # Bodies kept in files are lost with their columns: those deliveries are forgotten.
    op.execute("DELETE FROM deliveries WHERE body_file IS NOT NULL")
    with op.batch_alter_table("deliveries") as table:
        table.drop_column("body_length")
        table.drop_column("body_offset")
        table.drop_column("body_file")
