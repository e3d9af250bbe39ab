"""`.env` written in place: values set, other lines kept, atomic and readable by its owner only."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

DROPPED_KEYS = ("PRIVATE_KEY_PATH",)  # could shadow the PRIVATE_KEY the set-up writes


def quoted(value: str) -> str:
    """A double-quoted dotenv value on one line (python-dotenv decodes the escapes)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Set `values` in the dotenv file, keeping its other lines; atomic, mode 0600.

    Blocking file I/O: call it in a thread.
    """
    old = path.read_text() if path.exists() else ""
    replaced = set(values) | set(DROPPED_KEYS)
    lines = [*_without(old.splitlines(), replaced), *(f"{k}={v}" for k, v in values.items())]
    text = "\n".join(lines) + "\n"
    directory = path.parent if str(path.parent) else Path(".")
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)  # mkstemp makes 0600 already; say it anyway
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _without(lines: list[str], keys: set[str]) -> list[str]:
    """`lines` minus the assignments to `keys`, multi-line quoted values included."""
    kept: list[str] = []
    skipping_until: str | None = None
    for line in lines:
        if skipping_until is not None:
            if _closes(line, skipping_until):
                skipping_until = None
            continue
        match = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", line)
        if match and match.group(1) in keys:
            value = match.group(2)
            quote_char = value[:1]
            if quote_char in ("'", '"') and not _closes(value[1:], quote_char):
                skipping_until = quote_char
            continue
        kept.append(line)
    return kept


def _closes(text: str, quote_char: str) -> bool:
    """Whether `text` holds an unescaped closing `quote_char`."""
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quote_char == '"':
            escaped = True
        elif char == quote_char:
            return True
    return False
