"""The store's tables: one portable schema for SQLite and PostgreSQL (migrations mirror it)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    false,
    text,
)
from sqlalchemy.engine import Dialect


class UTCDateTime(TypeDecorator[datetime]):
    """Stored as UTC; always read back timezone-aware (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData()

deliveries = Table(
    "deliveries",
    metadata,
    Column("id", String(100), primary_key=True),  # X-GitHub-Delivery
    Column("event", String(64), nullable=False),
    Column("action", String(64)),
    Column("payload", JSON),  # before migration 0004; newer ones are in delivery_bodies
    Column("status", String(16), nullable=False, server_default="pending"),  # pending|done|failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", UTCDateTime),
    Column("received_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    # Migration 0007: on SQLite the body lies in a file beside the database (body_log.py).
    Column("body_file", String(100)),
    Column("body_offset", BigInteger),
    Column("body_length", Integer),
    # Migration 0008: what it is about (models.delivery_subject), for the claim's order rule.
    Column("subject", String(300)),
    # Migration 0011: the body's digest (GitHub's: the verified HMAC-SHA256 it signed the body
    # with), unique: GitHub signs only the body, so a captured delivery replayed under a new
    # X-GitHub-Delivery id is a duplicate.
    Column("body_digest", String(64)),
    Index("ix_deliveries_pending", "status", "received_at"),
    Index("ix_deliveries_finished", "finished_at"),  # migration 0004: retention
    Index("ix_deliveries_body_file", "body_file"),  # a day's file is removed once unused
    Index("ix_deliveries_body_digest", "body_digest", unique=True),
    Index(
        "ix_deliveries_subject_pending",
        "subject",
        "received_at",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)

# The body exactly as received, apart from the delivery's small and often-updated row, so a
# claim or a finish never rewrites kilobytes of payload (migration 0004). On PostgreSQL, and
# on SQLite where there is no file to lie beside (":memory:").
delivery_bodies = Table(
    "delivery_bodies",
    metadata,
    Column(
        "delivery_id",
        String(100),
        ForeignKey("deliveries.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("body", LargeBinary, nullable=False),
)

# Runs whose kind is ISSUE and that are still active may share no serial key: this partial
# unique index makes "one active run per issue" hold even for two processes enqueueing at once.
ACTIVE_ISSUE_WHERE = text("kind = 'issue' AND state IN ('queued', 'running')")

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repo", String(200), nullable=False),
    Column("installation_id", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    # "owner/name#N" for the issue (or PR) the run belongs to; runs sharing it never overlap.
    Column("serial_key", String(220)),
    Column("issue_number", Integer),
    Column("requested_by", String(200)),
    Column("instructions", Text, nullable=False, server_default=""),
    Column("branch", String(255)),
    Column("base_branch", String(255)),
    Column("pr_number", Integer),
    Column("pr_url", String(500)),
    Column("head_sha", String(64)),
    Column("tracking_comment_id", BigInteger),
    Column("slack_channel", String(64)),
    Column("slack_ts", String(64)),
    Column("delivery_id", String(100)),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("round", Integer, nullable=False, server_default="0"),
    Column("cancel_requested", Boolean, nullable=False, server_default=false()),
    Column("review", String(16)),  # migration 0003: the review's verdict
    Column("fleet_id", Integer),  # migration 0012: the fleet this run is one repository of
    Column("input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("output_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_creation_input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("cache_read_input_tokens", BigInteger, nullable=False, server_default="0"),
    Column("requests", Integer, nullable=False, server_default="0"),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_runs_state", "state", "id"),
    Index("ix_runs_serial_key", "serial_key", "state"),
    Index("ix_runs_repo_issue", "repo", "issue_number"),
    Index("ix_runs_repo_pr", "repo", "pr_number"),
    Index("ix_runs_repo_head_sha", "repo", "head_sha"),  # migration 0002
    Index("ix_runs_installation", "installation_id", "state"),
    Index("ix_runs_created_review", "created_at", "review"),  # migration 0003
    Index("ix_runs_fleet", "fleet_id", "repo"),  # migration 0012
    Index(
        "uq_runs_active_issue",
        "serial_key",
        unique=True,
        sqlite_where=ACTIVE_ISSUE_WHERE,
        postgresql_where=ACTIVE_ISSUE_WHERE,
    ),
)

run_steps = Table(
    "run_steps",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_run_steps_run", "run_id", "id"),
)

# What a run did, as it happened (transcript, phases, verification, diff): redacted and
# bounded by app/runs/events.py before it gets here. `seq` numbers a run's events 1, 2, ...
run_events = Table(
    "run_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("data", JSON, nullable=False),
    Column("size", Integer, nullable=False, server_default="0"),  # characters of `data`
    Column("at", UTCDateTime, nullable=False),
    Index("uq_run_events_run_seq", "run_id", "seq", unique=True),  # migration 0004
)

# A person's GitHub connection from Slack (migration 0006): the Slack user ("<team>:<user>"), the
# GitHub account their own authorization of the App names, and their user and refresh tokens,
# encrypted (app/github/connections.py; the store never sees them in the clear).
github_connections = Table(
    "github_connections",
    metadata,
    Column("slack_user", String(120), primary_key=True),
    Column("github_login", String(100), nullable=False),
    Column("github_id", BigInteger),
    Column("secret", LargeBinary, nullable=False),
    Column("connected_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_github_connections_github_id", "github_id"),
    Index("ix_github_connections_login", "github_login"),
)

# Fleet changes (migration 0012): one request taken to many repositories. A fleet's row;
# one row per repository it chose (skipped ones too, with their reason); and every change of
# a repository's state, from which the burndown is drawn. app/store/fleets.py owns them.
fleets = Table(
    "fleets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("installation_id", BigInteger, nullable=False),
    Column("requested_by", String(100), nullable=False),
    Column("request", Text, nullable=False),
    Column("selection", Text, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("canary_size", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("state_reason", Text),
    Column("issue_repo", String(200)),
    Column("issue_number", Integer),
    Column("summary_comment_id", BigInteger),
    Column("slack_channel", String(64)),
    Column("slack_ts", String(64)),
    Column("slack_summary_ts", String(64)),
    Column("milestones", JSON, nullable=False),
    Column("version", Integer, nullable=False, server_default="0"),
    Column("reported_version", Integer, nullable=False, server_default="0"),
    Column("lease_owner", String(200)),
    Column("lease_expires_at", UTCDateTime),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime),
    Index("ix_fleets_state", "state", "id"),
    Index("ix_fleets_issue", "issue_repo", "issue_number"),
)

fleet_repos = Table(
    "fleet_repos",
    metadata,
    Column("fleet_id", Integer, ForeignKey("fleets.id", ondelete="CASCADE"), primary_key=True),
    Column("repo", String(200), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("reason", Text),
    Column("run_id", Integer),
    Column("pr_number", Integer),
    Column("pr_url", String(500)),
    Column("head_sha", String(64)),
    Column("runs", Integer, nullable=False, server_default="0"),
    Column("cost_usd", Float, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_fleet_repos_position", "fleet_id", "position"),
    Index("ix_fleet_repos_run", "run_id"),
    Index("ix_fleet_repos_pr", "repo", "pr_number"),
)

fleet_transitions = Table(
    "fleet_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fleet_id", Integer, ForeignKey("fleets.id", ondelete="CASCADE"), nullable=False),
    Column("repo", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_fleet_transitions_fleet", "fleet_id", "id"),
)

kv = Table(
    "kv",
    metadata,
    Column("namespace", String(100), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", JSON, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

USAGE_COLUMNS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "requests",
)
