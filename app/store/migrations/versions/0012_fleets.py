"""Fleet changes: fleets, their repositories and the repositories' transitions; runs.fleet_id.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "fleets",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("selection", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("canary_size", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.Text()),
        sa.Column("issue_repo", sa.String(200)),
        sa.Column("issue_number", sa.Integer()),
        sa.Column("summary_comment_id", sa.BigInteger()),
        sa.Column("slack_channel", sa.String(64)),
        sa.Column("slack_ts", sa.String(64)),
        sa.Column("slack_summary_ts", sa.String(64)),
        sa.Column("milestones", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reported_version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_fleets_state", "fleets", ["state", "id"])
    op.create_index("ix_fleets_issue", "fleets", ["issue_repo", "issue_number"])
    op.create_table(
        "fleet_repos",
        sa.Column(
            "fleet_id",
            sa.Integer(),
            sa.ForeignKey("fleets.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("repo", sa.String(200), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("run_id", sa.Integer()),
        sa.Column("pr_number", sa.Integer()),
        sa.Column("pr_url", sa.String(500)),
        sa.Column("head_sha", sa.String(64)),
        sa.Column("runs", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("cost_usd", sa.Float(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_fleet_repos_position", "fleet_repos", ["fleet_id", "position"])
    op.create_index("ix_fleet_repos_run", "fleet_repos", ["run_id"])
    op.create_index("ix_fleet_repos_pr", "fleet_repos", ["repo", "pr_number"])
    op.create_table(
        "fleet_transitions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "fleet_id", sa.Integer(), sa.ForeignKey("fleets.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("repo", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_fleet_transitions_fleet", "fleet_transitions", ["fleet_id", "id"])
    # A run that is one repository of a fleet names it (the conductor finds its runs by it).
    op.add_column("runs", sa.Column("fleet_id", sa.Integer()))
    op.create_index("ix_runs_fleet", "runs", ["fleet_id", "repo"])


def downgrade() -> None:
    op.drop_index("ix_runs_fleet", table_name="runs")
    with op.batch_alter_table("runs") as table:
        table.drop_column("fleet_id")
    op.drop_table("fleet_transitions")
    op.drop_table("fleet_repos")
    op.drop_table("fleets")
