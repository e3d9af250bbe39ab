"""tools/rename_imports.py: code written before the domain types, rewritten to the new names."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "rename_imports.py"


def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("rename_imports", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OLD = """\
from app.actions import may_act
from app.ci.live import follow_merge_ci
from app.going_live import Refused
from app.handlers.context import HandlerContext, is_bot
from app.installations import REMOVED, record_repository
from app.review.reports import SKIPPED as TEST_SKIPPED
from app.runs import test_syntax
from app.runs.review import VETOED, Review

ok = test_syntax.is_test_file("test_calc.py") and not is_bot(user)
gone = review.verdict == VETOED and state == REMOVED
kept = "VETOED" != TEST_SKIPPED
"""
NEW = """\
from app.run_requests import may_act
from app.ci.after_merge import follow_merge_ci
from app.as_person import Refused
from app.handlers.context import HandlerContext
from app.github.users import is_bot
from app.installations import record_repository
from app.installations import RepositoryState
from app.review.reports import SKIPPED as TEST_SKIPPED
from app.runs import tests_in_diffs
from app.runs.review import Review
from app.models import ReviewVerdict

ok = tests_in_diffs.is_test_file("test_calc.py") and not is_bot(user)
gone = review.verdict == ReviewVerdict.VETOED and state == RepositoryState.REMOVED
kept = "VETOED" != TEST_SKIPPED
"""


def test_old_names_are_rewritten_once() -> None:
    assert tool().rewrite(OLD) == NEW
    assert tool().rewrite(NEW) == NEW


def test_the_new_names_exist() -> None:
    for old, new in tool().MODULES.items():
        assert (ROOT / (new.replace(".", "/") + ".py")).is_file(), new
        assert not (ROOT / (old.replace(".", "/") + ".py")).exists(), old
    assert importlib.import_module("app.models").ReviewVerdict.VETOED == "vetoed"


def test_check_lists_what_would_change(tmp_path: Path) -> None:
    old = tmp_path / "old.py"
    old.write_text(OLD)
    command = [sys.executable, str(TOOL), "--check", str(old)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "old.py" in result.stdout
    assert old.read_text() == OLD
    subprocess.run([sys.executable, str(TOOL), str(old)], check=True, timeout=60)
    assert old.read_text() == NEW
