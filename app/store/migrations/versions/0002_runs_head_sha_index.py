"""Index runs by (repo, head_sha): every CI event looks its run up by commit.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_runs_repo_head_sha", "runs", ["repo", "head_sha"])


def downgrade() -> None:
    op.drop_index("ix_runs_repo_head_sha", table_name="runs")
