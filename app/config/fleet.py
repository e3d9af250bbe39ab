"""Fleet changes' settings: the canary, how many of a fleet's runs go at once, when it pauses
itself, how large it may be (docs/fleet.md)."""

from __future__ import annotations

from dataclasses import dataclass

from app.config.declare import Group, setting
from app.config.parse import number, optional_int, whole


@dataclass(frozen=True)
class FleetSettings(Group):
    """How a fleet change is taken to its repositories: its canary, how many of its runs go at
    once, when it pauses itself, how large it may be (docs/fleet.md)."""

    section = "Fleet changes"

    canary_size: int = setting(
        "HONK_FLEET_CANARY",
        whole(1),
        1,
        "repositories a fleet tries first, before the requester says Continue (a request's "
        "`canary: N` wins)",
        flat="fleet_canary",
    )
    concurrency: int = setting(
        "HONK_FLEET_CONCURRENCY",
        whole(1),
        4,
        "runs of one fleet queued or working at once",
        flat="fleet_concurrency",
    )
    # Unset: half of this process's workers (at least 1), so ordinary runs keep workers free.
    max_runs: int | None = setting(
        "HONK_FLEET_MAX_RUNS",
        optional_int,
        None,
        (
            "runs of all fleets of one installation queued or working at once, so that an issue"
            " labelled during a fleet still finds a worker; unset, half of this process's"
            " workers (at least 1)"
        ),
        flat="fleet_max_runs",
    )
    pause_after: int = setting(
        "HONK_FLEET_PAUSE_AFTER",
        whole(1),
        3,
        "failures in a row after which a fleet pauses itself and says why",
        flat="fleet_pause_after",
    )
    max_repos: int = setting(
        "HONK_FLEET_MAX_REPOS",
        whole(1),
        500,
        "the most repositories one fleet may take; a larger selection leaves the rest out",
        flat="fleet_max_repos",
    )
    poll_seconds: float = setting(
        "HONK_FLEET_POLL_SECONDS",
        number(),
        5.0,
        (
            "seconds between the conductor's looks at its fleets when nothing woke it (a run"
            " of another process ended)"
        ),
        flat="fleet_poll_seconds",
    )

    def run_cap(self, workers: int) -> int:
        """Fleet runs in flight per installation: the setting, else half of `workers`."""
        return self.max_runs if self.max_runs is not None else max(1, workers // 2)
