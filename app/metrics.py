"""What an operator can scrape (Prometheus): every metric Honk keeps, declared in one place.

The metrics live in one registry of Honk's own (not prometheus_client's global one), so a
test or a second app in the same process starts from its own figures. Recording a metric is
a few hundred nanoseconds and never fails the work it measures.
"""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

registry = CollectorRegistry(auto_describe=True)


@functools.lru_cache(maxsize=4096)
def labelled(metric: Any, *values: str) -> Any:
    """metric.labels(*values), looked up once: on the webhook's hot path it is per delivery."""
    return metric.labels(*values)


# Latency buckets in seconds: loopback ingest is milliseconds, a GitHub call up to seconds.
FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SLOW = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

deliveries = Counter(
    "honk_deliveries_total",
    "Webhook and Slack requests received, by event and what became of them",
    ("event", "outcome"),  # outcome: stored | duplicate | refused
    registry=registry,
)
ingest_seconds = Histogram(
    "honk_ingest_seconds",
    "From a webhook's arrival to its answer (verified and durably stored)",
    buckets=FAST,
    registry=registry,
)
inbox_batch = Histogram(
    "honk_inbox_batch_deliveries",
    "Deliveries written in one group commit",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=registry,
)
dispatch_seconds = Histogram(
    "honk_dispatch_seconds",
    "Handling one stored delivery, by event",
    ("event",),
    buckets=FAST,
    registry=registry,
)
dispatched = Counter(
    "honk_dispatched_total",
    "Stored deliveries handled, by event and result (done, failed, retry)",
    ("event", "result"),
    registry=registry,
)
inbox_depth = Gauge(
    "honk_inbox_pending", "Deliveries stored and not yet dispatched", registry=registry
)
inbox_oldest = Gauge(
    "honk_inbox_oldest_pending_seconds",
    "Age of the oldest delivery not yet dispatched (0 when there is none)",
    registry=registry,
)
runs = Gauge("honk_runs", "Runs in the store, by state", ("state",), registry=registry)
fleets = Gauge("honk_fleets", "Fleet changes in the store, by state", ("state",), registry=registry)
fleet_repos = Gauge(
    "honk_fleet_repos",
    "Repositories of the fleets not ended, by state (planned ... merged, failed, skipped)",
    ("state",),
    registry=registry,
)
runs_finished = Counter(
    "honk_runs_finished_total",
    "Runs that ended, by kind and outcome",
    ("kind", "outcome"),
    registry=registry,
)
phase_seconds = Histogram(
    "honk_run_phase_seconds",
    "How long each phase of a run took",
    ("phase",),
    buckets=SLOW,
    registry=registry,
)
tokens = Counter(
    "honk_model_tokens_total",
    "Tokens used, by model and kind (input, output, cache_read, cache_write)",
    ("model", "kind"),
    registry=registry,
)
cost = Counter(
    "honk_model_cost_dollars_total", "List-price cost of model use", ("model",), registry=registry
)
verdicts = Counter(
    "honk_review_verdicts_total", "The judge's verdicts on runs", ("verdict",), registry=registry
)
review_outcome_findings = Counter(
    "honk_review_outcome_findings_total",
    "Findings of the review's test outcome checks, by check (pass-to-pass, fail-to-pass)",
    ("check",),
    registry=registry,
)
cache_restores = Counter(
    "honk_cache_restores_total",
    "Package caches restored into a run's home before setup, by result (hit, partial, miss)",
    ("result",),
    registry=registry,
)
review_base_results = Counter(
    "honk_review_base_results_total",
    "The base's test results the outcome checks used, by source (ran, cached)",
    ("source",),
    registry=registry,
)
review_outcome_seconds = Histogram(
    "honk_review_outcome_seconds",
    "The outcome checks of one look at a change, by where the base's results came from",
    ("base",),  # ran | cached | none
    buckets=SLOW,
    registry=registry,
)
sandbox_seconds = Histogram(
    "honk_sandbox_command_seconds",
    "Sandboxed commands, by how they ended (ok, failed, timeout, killed)",
    ("result",),
    buckets=SLOW,
    registry=registry,
)
egress_proxies = Counter(
    "honk_egress_proxies_started_total",
    "Network proxies started for a sandbox phase (setup, agent)",
    ("phase",),
    registry=registry,
)
sandbox_connections = Counter(
    "honk_sandbox_connections_total",
    "Connections from sandboxes through the network proxy, by phase and outcome",
    ("phase", "outcome"),
    registry=registry,
)
github_calls = Counter(
    "honk_github_requests_total",
    "GitHub REST requests, by method and HTTP status (or error)",
    ("method", "status"),
    registry=registry,
)
github_rate_remaining = Gauge(
    "honk_github_rate_limit_remaining",
    "x-ratelimit-remaining of GitHub's last answer",
    registry=registry,
)
github_writes = Counter(
    "honk_github_writes_total",
    "Content-creating GitHub requests admitted by the pacer, by priority",
    ("priority",),
    registry=registry,
)
github_paced_seconds = Histogram(
    "honk_github_paced_seconds",
    "Time GitHub requests waited for their installation's budget, by priority",
    ("priority",),
    buckets=(0.5, 1, 5, 15, 30, 60, 300, 900, 3600),
    registry=registry,
)
slack_calls = Counter(
    "honk_slack_requests_total",
    "Slack Web API calls, by method and outcome (ok, or Slack's error)",
    ("method", "outcome"),
    registry=registry,
)


def count_usage(model: str, token_counts: dict[str, int], dollars: float) -> None:
    """One model request's tokens (Usage.to_dict()) and list-price cost."""
    for kind, field in (
        ("input", "input_tokens"),
        ("output", "output_tokens"),
        ("cache_read", "cache_read_input_tokens"),
        ("cache_write", "cache_creation_input_tokens"),
    ):
        if token_counts.get(field):
            tokens.labels(model, kind).inc(token_counts[field])
    cost.labels(model).inc(dollars)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus' text format, and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
