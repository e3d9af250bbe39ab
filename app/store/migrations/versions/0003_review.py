"""Record each run's review verdict (approved, recovered, vetoed, unavailable, skipped).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("review", sa.String(16)))
    # `honk stats` counts verdicts over a period.
    op.create_index("ix_runs_created_review", "runs", ["created_at", "review"])


def downgrade() -> None:
    op.drop_index("ix_runs_created_review", table_name="runs")
    op.drop_column("runs", "review")
