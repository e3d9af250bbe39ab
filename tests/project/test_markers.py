"""The slow groups: tests/conftest.py marks tests by module, folder and fixture, so that
`python -m pytest -m "not slow"` is the fast group and a new e2e or browser test is slow too."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.conftest import E2E_MODULES, SLOW_MARKS, SLOW_MODULES, kinds_of

ROOT = Path(__file__).resolve().parents[2]


def test_a_module_named_e2e_or_under_e2e_is_an_end_to_end_run_in_bwrap() -> None:
    assert kinds_of("test_new_thing_e2e", (), set()) == {"e2e", "bwrap"}
    assert kinds_of("test_new_thing", ("e2e",), set()) == {"e2e", "bwrap"}
    assert kinds_of("test_crash_recovery", (), set()) == {"e2e", "bwrap"}


def test_browser_by_name_folder_or_the_browser_fixture() -> None:
    assert kinds_of("test_page_browser", (), set()) == {"browser"}
    assert kinds_of("test_page", ("browser",), set()) == {"browser"}
    assert kinds_of("test_page", (), {"b", "tmp_path"}) == {"browser"}


def test_a_hand_built_sandbox_is_bwrap_and_the_rest_is_fast() -> None:
    assert kinds_of("test_thing", (), {"sandbox_python"}) == {"bwrap"}
    assert kinds_of("test_tamper", (), set()) == {"slow"}
    assert kinds_of("test_config", (), {"base_settings", "tmp_path"}) == set()


def test_every_mark_the_hook_gives_is_registered_and_every_listed_module_exists() -> None:
    registered = {
        line.split(":")[0]
        for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"][
            "ini_options"
        ]["markers"]
    }
    assert {*SLOW_MARKS, "slow"} <= registered
    tests = {path.stem for path in (ROOT / "tests").rglob("test_*.py")}
    assert sorted((E2E_MODULES | SLOW_MODULES) - tests) == []


def test_this_module_is_in_the_fast_group(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("slow") is None
