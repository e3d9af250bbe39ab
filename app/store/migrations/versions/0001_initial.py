"""Initial schema: webhook deliveries, runs (the queue) with their steps, key-value facts.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)
ACTIVE_ISSUE_WHERE = sa.text("kind = 'issue' AND state IN ('queued', 'running')")


def upgrade() -> None:
    op.create_table(
        "deliveries",
        sa.Column("id", sa.String(100), primary_key=True),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64)),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", WHEN),
        sa.Column("received_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN),
    )
    op.create_index("ix_deliveries_pending", "deliveries", ["status", "received_at"])

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("repo", sa.String(200), nullable=False),
        sa.Column("installation_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("serial_key", sa.String(220)),
        sa.Column("issue_number", sa.Integer()),
        sa.Column("requested_by", sa.String(200)),
        sa.Column("instructions", sa.Text(), server_default="", nullable=False),
        sa.Column("branch", sa.String(255)),
        sa.Column("base_branch", sa.String(255)),
        sa.Column("pr_number", sa.Integer()),
        sa.Column("pr_url", sa.String(500)),
        sa.Column("head_sha", sa.String(64)),
        sa.Column("tracking_comment_id", sa.BigInteger()),
        sa.Column("slack_channel", sa.String(64)),
        sa.Column("slack_ts", sa.String(64)),
        sa.Column("delivery_id", sa.String(100)),
        sa.Column("error", sa.Text()),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("round", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "cache_creation_input_tokens", sa.BigInteger(), server_default="0", nullable=False
        ),
        sa.Column("cache_read_input_tokens", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("requests", sa.Integer(), server_default="0", nullable=False),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", WHEN),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("started_at", WHEN),
        sa.Column("finished_at", WHEN),
        sa.Column("updated_at", WHEN, nullable=False),
    )
    op.create_index("ix_runs_state", "runs", ["state", "id"])
    op.create_index("ix_runs_serial_key", "runs", ["serial_key", "state"])
    op.create_index("ix_runs_repo_issue", "runs", ["repo", "issue_number"])
    op.create_index("ix_runs_repo_pr", "runs", ["repo", "pr_number"])
    op.create_index("ix_runs_installation", "runs", ["installation_id", "state"])
    op.create_index(
        "uq_runs_active_issue",
        "runs",
        ["serial_key"],
        unique=True,
        sqlite_where=ACTIVE_ISSUE_WHERE,
        postgresql_where=ACTIVE_ISSUE_WHERE,
    )

    op.create_table(
        "run_steps",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("detail", sa.Text(), server_default="", nullable=False),
        sa.Column("at", WHEN, nullable=False),
    )
    op.create_index("ix_run_steps_run", "run_steps", ["run_id", "id"])

    op.create_table(
        "kv",
        sa.Column("namespace", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
    )


def downgrade() -> None:
    for table in ("kv", "run_steps", "runs", "deliveries"):
        op.drop_table(table)
