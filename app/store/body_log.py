"""Delivery bodies on SQLite: appended, exactly as received, to day files beside the database.

A body is kilobytes. Inside SQLite each one would be written twice (into the WAL, then by the
checkpoint), page by page, and indexed under a random key; appended here, a whole batch of
bodies is one write, and its row keeps where the body lies (file, offset, length). Each
process appends to files of its own (`<day>-<token>.log`), so several processes sharing one
database never interleave; any of them reads any file. The rows are committed only after the
write has returned, so a process killed at any moment leaves no row without its body (the
page cache keeps what was written); a file is synced now and then too (SYNC_EVERY), which
bounds what a power cut could take from bodies whose rows survived it.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

SYNC_EVERY = 0.2  # seconds between two fdatasyncs of the file being appended to
_NAME = re.compile(r"^(\d{4}-\d\d-\d\d)-[0-9a-f]+\.log$")


def directory_for(database: str) -> Path:
    """Where the bodies of this database lie: beside it, as its -wal and -shm files do."""
    return Path(f"{database}-bodies")


class BodyLog:
    """One lane's appender and reader; used from the lane's thread only."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._token = secrets.token_hex(6)  # this appender's own files
        self._name: str | None = None  # the file being appended to
        self._fd: int | None = None
        self._size = 0
        self._readers: dict[str, int] = {}
        self._synced_at = time.monotonic()
        self._unsynced = False

    def append(self, bodies: Sequence[bytes]) -> list[tuple[str, int]]:
        """Write the bodies one after another; where each starts (file name, offset)."""
        name = self._current()
        assert self._fd is not None
        data = b"".join(bodies)
        try:
            written = 0
            view = memoryview(data)
            while written < len(data):
                written += os.write(self._fd, view[written:])
        except BaseException:
            self._size = os.fstat(self._fd).st_size  # a short write leaves an unreferenced tail
            raise
        places: list[tuple[str, int]] = []
        offset = self._size
        for body in bodies:
            places.append((name, offset))
            offset += len(body)
        self._size = offset
        self._unsynced = True
        if time.monotonic() - self._synced_at >= SYNC_EVERY:
            self.sync()
        return places

    def sync(self) -> None:
        if self._unsynced and self._fd is not None:
            os.fdatasync(self._fd)
            self._unsynced = False
        self._synced_at = time.monotonic()

    def read(self, name: str, offset: int, length: int) -> bytes | None:
        """The body at (name, offset, length); None when its file is gone or cut short."""
        if not _NAME.match(name):
            return None  # a name from the database, never a path to elsewhere
        fd = self._readers.get(name)
        if fd is None:
            try:
                fd = os.open(self.directory / name, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
            self._readers[name] = fd
        data = os.pread(fd, length, offset)
        return data if len(data) == length else None

    def old_files(self, before: date) -> list[str]:
        """This directory's files (any process's) of days before `before`."""
        if not self.directory.is_dir():
            return []
        names = []
        for path in self.directory.iterdir():
            match = _NAME.match(path.name)
            if match and date.fromisoformat(match.group(1)) < before:
                names.append(path.name)
        return sorted(names)

    def remove(self, names: Iterable[str]) -> None:
        for name in names:
            fd = self._readers.pop(name, None)
            if fd is not None:
                os.close(fd)
            (self.directory / name).unlink(missing_ok=True)

    def close(self) -> None:
        self.sync()
        for fd in (self._fd, *self._readers.values()):
            if fd is not None:
                os.close(fd)
        self._fd, self._name, self._readers = None, None, {}

    def _current(self) -> str:
        """The file to append to: today's (UTC) of this lane, opened or started."""
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            # Removed under us (by hand): what follows goes to a file of another name, so no
            # row of the removed one ever reads a body of the new one.
            self._token, self._name = secrets.token_hex(6), None
        name = f"{datetime.now(UTC).date().isoformat()}-{self._token}.log"
        if name != self._name:
            if self._fd is not None:
                self.sync()
                os.close(self._fd)
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._fd = os.open(
                self.directory / name,
                os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                0o600,
            )
            self._name, self._size = name, os.fstat(self._fd).st_size
        return name
