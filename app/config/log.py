"""The logs' settings: level and format."""

from __future__ import annotations

from dataclasses import dataclass

from app.config.declare import Group, setting
from app.config.parse import one_of


@dataclass(frozen=True)
class LogSettings(Group):
    section = "The service"

    level: str = setting(
        "LOG_LEVEL",
        one_of("DEBUG", "INFO", "WARNING", "ERROR", upper=True),
        "INFO",
        "`DEBUG`, `INFO`, `WARNING` or `ERROR`",
        flat="log_level",
    )
    format: str = setting(
        "LOG_FORMAT",
        one_of("auto", "json", "text"),
        "auto",
        "`json`, `text`, or `auto`: JSON lines when not on a terminal",
        flat="log_format",
    )
