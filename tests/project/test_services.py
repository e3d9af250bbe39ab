"""open_services closes what it opened, whatever fails half-way through opening the rest."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.services import open_services


def _sqlite_files(settings: Settings) -> list[str]:
    database = Path(settings.store.data_dir) / "honk.db"
    return sorted(p.name for p in database.parent.glob(f"{database.name}*"))


@contextlib.asynccontextmanager
async def _unclosed_sessions() -> AsyncIterator[list[str]]:
    """What the loop is told, meanwhile, of aiohttp sessions collected unclosed (as
    ClientSession.__del__ tells it), a full collection at the end included."""
    loop = asyncio.get_running_loop()
    told: list[str] = []
    previous = loop.get_exception_handler()

    def handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        told.append(str(context.get("message")))

    unclosed: list[str] = []
    loop.set_exception_handler(handler)
    try:
        yield unclosed
        await asyncio.to_thread(gc.collect)  # a full collection may take the loop a second
    finally:
        loop.set_exception_handler(previous)
    unclosed += [message for message in told if "Unclosed client session" in message]


async def test_a_service_failing_to_open_closes_those_opened_before_it(
    base_settings: Settings,
) -> None:
    # GitHubConnections opens after the store, the HTTP session and Slack's client: a key
    # that is not a Fernet key (the environment's parser refuses it; a Settings built by hand
    # does not) makes it fail.
    settings = base_settings.with_overrides(token_key="not-a-fernet-key")
    threads = set(threading.enumerate())
    async with _unclosed_sessions() as unclosed:
        with pytest.raises(ValueError, match="Fernet key"):
            async with open_services(settings, dispatch=True):
                pytest.fail("the services opened with a bad token key")
        # The store was opened (its database written), then closed: SQLite removes the WAL
        # and shared-memory files when its last connection closes, and aiosqlite's threads end.
        assert _sqlite_files(settings) == ["honk.db"]
        assert [t.name for t in set(threading.enumerate()) - threads if t.is_alive()] == []
    # The HTTP session was closed, not left for the collector to complain about.
    assert unclosed == []


async def test_services_that_opened_are_closed_in_turn(base_settings: Settings) -> None:
    """The same observations hold after a normal start and stop (they are not vacuous: the
    store's files and thread exist while it is open)."""
    threads = set(threading.enumerate())
    async with open_services(base_settings, dispatch=True) as services:
        assert "honk.db-wal" in _sqlite_files(base_settings)
        assert set(threading.enumerate()) - threads
        assert not services.session.closed
        session = services.session
    assert session.closed
    assert _sqlite_files(base_settings) == ["honk.db"]
