"""Shared fixtures: settings over a temporary data dir, a real RSA key, webhook payloads, fakes."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.config import Settings
from app.workspace.mounts import SandboxPython
from tests.loop_watch import (
    WATCHDOG_CATCH_UP_SECONDS,
    Delays,
    Stall,
    Watchdog,
    own_seconds,
)
from tests.sandbox_python import build_sandbox_python

# Each fake is a real aiohttp app on loopback, defined once and shared by all tests; the calc
# world brings `calc_world_settings`, the run page's world `page_client` (Honk with sign-in).
pytest_plugins = [
    "tests.fakes.github",
    "tests.fakes.slack",
    "tests.fakes.anthropic",
    "tests.calc_world",
    "tests.run_page_world",
]

FIXTURES = Path(__file__).parent / "fixtures"

# -- the slow groups ---------------------------------------------------------------------------
# Markers by module and fixture (registered in pyproject.toml), so that a new test of a kind
# is marked with its module's kind: `python -m pytest -m "not slow"` runs the fast group.
#   e2e: whole runs through Honk's pipeline (worker, real git, real bwrap, the fakes): a
#        module named `*_e2e.py` (or under a folder `e2e/`) or listed in E2E_MODULES;
#   browser: Debian's chromium through Playwright: a module named `*_browser.py` (or under
#        `browser/`), or a test that uses the session's browser fixture;
#   bwrap: commands in real bubblewrap sandboxes (marked by hand, and any e2e test, and a test
#        that builds a Sandbox with the `sandbox_python` fixture);
#   postgres: the PostgreSQL on 127.0.0.1:5432 (marked by hand);
#   slow: any of those, and the modules in SLOW_MODULES (real git and sandboxed test runs).
E2E_MODULES = frozenset(
    {
        "test_click_crash",
        "test_crash_recovery",
        "test_go_live",
        "test_hostile_text",
        "test_nested_repositories",
        "test_paths_policy",
        "test_run_network",
        "test_run_threads",
        "test_setup_network",
        "test_git_host_safety",
        "test_local_run",
        "test_metrics",
        "test_slack_front_door",
    }
)
SLOW_MODULES = frozenset(
    {
        "test_review_outcome",
        "test_tamper",
        "test_diff_checks",
        "test_cli",
        "test_doctor",
        "test_store_crash",
        "test_workflow_push",
        "test_workspace",
        "test_workspace_isolation",
    }
)
BROWSER_FIXTURES = frozenset({"b"})
SLOW_MARKS = ("e2e", "browser", "bwrap", "postgres")
WEBHOOK_SECRET = "test-webhook-secret-5f2c"
# Holding the loop this long fails a test (asyncio debug mode reports it).
SLOW_CALLBACK_SECONDS = 1.0


def new_private_key() -> str:
    """A fresh RSA key in PEM, as GitHub issues them for Apps."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="session")
def private_key_pem() -> str:
    return new_private_key()


@pytest.fixture(scope="session")
def sandbox_python_prefix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HONK_SANDBOX_PYTHON for the tests: the base interpreter with pytest and pip only
    (tests/sandbox_python.py), made once per session and xdist worker."""
    return build_sandbox_python(tmp_path_factory.mktemp("sandbox-python") / "venv")


@pytest.fixture
def sandbox_python(sandbox_python_prefix: Path) -> SandboxPython:
    """The same, for a test that builds its Sandbox by hand."""
    return SandboxPython(str(sandbox_python_prefix))


@pytest.fixture
def base_settings(tmp_path: Path, private_key_pem: str, sandbox_python_prefix: Path) -> Settings:
    """Settings with no reachable outside service: tests add the fakes they use."""
    data_dir = tmp_path / "honk-data"
    return Settings().with_overrides(
        app_id=4242,
        private_key=private_key_pem,
        webhook_secret=WEBHOOK_SECRET,
        github_api_url="http://127.0.0.1:9",
        anthropic_api_key="sk-ant-test-key-0123456789",
        anthropic_base_url="http://127.0.0.1:9",
        data_dir=data_dir,
        checkout_dir=tmp_path / "checkouts",
        database_url=f"sqlite+aiosqlite:///{data_dir / 'honk.db'}",
        workers=0,
        poll_interval=0.05,
        lease_seconds=5.0,
        label_pause=0.0,
        log_format="text",
        sandbox_python=sandbox_python_prefix,
    )


def load_payload(name: str, **overrides: Any) -> dict[str, Any]:
    """A real GitHub payload from tests/fixtures, e.g. load_payload("issues.labeled.1")."""
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    data.update(overrides)
    return data


def sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def payload() -> Callable[..., dict[str, Any]]:
    return load_payload


class _SlowCallbacks(logging.Handler):
    """Collects asyncio's "Executing <...> took N seconds" warnings (debug mode).

    Each is kept with how long it took and when it ended (on the monotonic clock), so that
    the stalls of the whole process the watchdog saw can be taken out (tests/loop_watch.py).
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[tuple[str, float, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        took = re.search(r" took (\d+(?:\.\d+)?) seconds$", message)
        if message.startswith("Executing ") and took:
            self.seen.append((message, float(took.group(1)), time.monotonic()))

    def blocked(self, stalls: list[Stall], delays: Delays) -> list[str]:
        """The callbacks that held the loop themselves: the whole process's stalls and the
        loop thread's waits for a CPU taken out."""
        return [
            f"{message} ({own:.3f} s of it neither a stall nor a wait for a CPU)"
            for message, took, ended in self.seen
            if (own := own_seconds(took, ended, stalls, delays)) >= SLOW_CALLBACK_SECONDS
        ]


_WATCHDOG = Watchdog()


def _not_debugging() -> bool:
    return False


def pytest_configure(config: pytest.Config) -> None:
    _WATCHDOG.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    _WATCHDOG.stop()


@pytest.fixture(autouse=True)
async def no_blocking_the_event_loop() -> AsyncIterator[None]:
    """Fail any test whose code holds the event loop for a second or more.

    asyncio's debug mode times every callback (the loop's `_run_once` reads its `_debug`
    flag). What else it does costs about three times the CPU and is not needed here: a
    stack captured for every future, task and handle (each asks `loop.get_debug()`, which
    answers False here) and coroutine origin tracking (turned off once debug mode has
    scheduled it on)."""
    loop = asyncio.get_running_loop()
    loop.slow_callback_duration = SLOW_CALLBACK_SECONDS
    loop.set_debug(True)
    loop.get_debug = _not_debugging  # type: ignore[method-assign]
    await asyncio.sleep(0)  # set_debug turns origin tracking on at the loop's next turn
    depth = sys.get_coroutine_origin_tracking_depth()
    sys.set_coroutine_origin_tracking_depth(0)
    handler = _SlowCallbacks()
    asyncio_log = logging.getLogger("asyncio")
    asyncio_log.addHandler(handler)
    level = asyncio_log.level
    asyncio_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        asyncio_log.removeHandler(handler)
        asyncio_log.setLevel(level)
        del loop.get_debug  # type: ignore[method-assign]
        sys.set_coroutine_origin_tracking_depth(depth)
        loop.set_debug(False)
    if handler.seen:
        await asyncio.sleep(WATCHDOG_CATCH_UP_SECONDS)
    blocked = handler.blocked(_WATCHDOG.stalls(), _WATCHDOG.delays())
    assert not blocked, f"the event loop was blocked: {blocked[0][:600]}"


def kinds_of(module: str, folders: tuple[str, ...], fixtures: set[str]) -> set[str]:
    """The slow-group markers a test gets from its module's name and folders and its fixtures."""
    kinds: set[str] = set()
    if module.endswith("_e2e") or module in E2E_MODULES or "e2e" in folders:
        kinds |= {"e2e", "bwrap"}
    if module.endswith("_browser") or "browser" in folders or fixtures & BROWSER_FIXTURES:
        kinds.add("browser")
    if "sandbox_python" in fixtures:
        kinds.add("bwrap")
    if module in SLOW_MODULES:
        kinds.add("slow")
    return kinds


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        path = Path(str(item.path))
        folders = path.parent.relative_to(root).parts if path.is_relative_to(root) else ()
        kinds = kinds_of(path.stem, folders, set(getattr(item, "fixturenames", ())))
        kinds |= {name for name in SLOW_MARKS if item.get_closest_marker(name)}
        if kinds:
            kinds.add("slow")
        for name in sorted(kinds):
            if not item.get_closest_marker(name):
                item.add_marker(name)
    # The longest modules first (xdist hands out whole modules in this order, `--dist
    # loadfile`): the short ones fill the end, so neither process waits long for the other.
    rank: dict[Path, int] = {}
    for item in items:
        path = Path(str(item.path))
        rank[path] = min(rank.get(path, 3), cost_rank(item))
    items.sort(key=lambda item: rank[Path(str(item.path))])


def cost_rank(item: pytest.Item) -> int:
    """0 for whole runs and browsers, 1 for other slow tests, 2 for the fast group."""
    if item.get_closest_marker("e2e") or item.get_closest_marker("browser"):
        return 0
    return 1 if item.get_closest_marker("slow") else 2
