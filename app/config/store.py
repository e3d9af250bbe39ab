"""The store's settings: the data directory, the database, the queue's workers, leases and
polls."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from app.config.declare import Getter, Group, setting
from app.config.parse import database_url, number, path, whole


@dataclass(frozen=True)
class StoreSettings(Group):
    """The data directory, the database, and the queue's workers and leases."""

    section = "Storage"

    data_dir: Path = setting(
        "HONK_DATA_DIR",
        path,
        Path(".honk"),
        "mirrors, the SQLite database, the key that names checkouts",
    )
    # Unset: honk.db in the data directory (filled in by `checked`).
    database_url: str = setting(
        "DATABASE_URL",
        database_url,
        "",
        (
            "the store; unset, `honk.db` in `HONK_DATA_DIR`. `postgresql://…` shares one queue "
            "between processes and machines ([scale-out.md](scale-out.md))"
        ),
        shown="`sqlite:///.honk/honk.db`",
    )
    retention_days: float = setting(
        "HONK_RETENTION_DAYS",
        number(),
        14.0,
        "finished deliveries older than this are removed (hourly); runs are kept",
    )
    workers: int = setting(
        "HONK_WORKERS",
        whole(0),
        2,
        (
            "concurrent runs in this process (0: `honk serve` only answers webhooks; `honk "
            "worker` runs at least 1)"
        ),
        section="The service",
    )
    # A worker renews every lease_seconds/3; a dead worker's run is claimed again after it.
    lease_seconds: float = setting(
        "HONK_LEASE_SECONDS",
        number(),
        60.0,
        (
            "how long a run's and a stored delivery's lease lasts, renewed every third of it: a"
            " dead process's runs and deliveries are taken over after this"
        ),
        section="The service",
    )
    poll_interval: float = setting(
        "HONK_POLL_INTERVAL",
        number(),
        1.0,
        (
            "seconds between looks at the store for work nothing woke this process for (another"
            " process's deliveries and runs)"
        ),
        section="The service",
    )

    def checked(self, get: Getter) -> StoreSettings:
        if self.database_url:
            return self
        return replace(self, database_url=f"sqlite+aiosqlite:///{self.data_dir / 'honk.db'}")
