"""Deliveries keep a digest of their body: a signed body replayed under a new id is refused.

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
# Chained after 0008 on its branch (crash-holes); 0009 and 0010 are other branches' and the
# integrator re-chains this one after them.
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # GitHub signs the body only: the delivery id is the sender's to choose. Deliveries stored
    # before this (and Slack's requests) have no digest; NULLs never collide in a unique index.
    op.add_column("deliveries", sa.Column("body_digest", sa.String(64)))
    op.create_index("ix_deliveries_body_digest", "deliveries", ["body_digest"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_deliveries_body_digest", table_name="deliveries")
    with op.batch_alter_table("deliveries") as table:
        table.drop_column("body_digest")
