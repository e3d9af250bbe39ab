"""github_connections: Slack users connected to GitHub, their user tokens encrypted at rest.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "github_connections",
        sa.Column("slack_user", sa.String(120), primary_key=True),
        sa.Column("github_login", sa.String(100), nullable=False),
        sa.Column("github_id", sa.BigInteger()),
        sa.Column("secret", sa.LargeBinary(), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # github_app_authorization.revoked names the GitHub user: their connections go.
    op.create_index("ix_github_connections_github_id", "github_connections", ["github_id"])
    op.create_index("ix_github_connections_login", "github_connections", ["github_login"])


def downgrade() -> None:
    op.drop_table("github_connections")
